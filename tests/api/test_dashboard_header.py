"""The dashboard's header over plain HTTP: the project's ref, and the link to Flower when
``REPRISE_FLOWER_URL`` is set (``reprise dev`` sets it to the Flower it starts)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from reprise_server.shared.db import transaction
from reprise_server.shared.projects.models import Project
from reprise_server.shared.settings import reset_settings_cache
from tests.api.test_dashboard_queues import sign_in
from tests.support.fixtures import ProjectKeys


@pytest.fixture
def flower_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv("REPRISE_FLOWER_URL", raising=False)
        else:
            monkeypatch.setenv("REPRISE_FLOWER_URL", value)
        reset_settings_cache()

    yield set_to
    monkeypatch.undo()
    reset_settings_cache()


def flower_links(text: str) -> list[str]:
    return re.findall(r'<a class="external" href="([^"]*)"[^>]*>Flower', text)


def test_the_header_links_to_flower_when_its_url_is_set(
    api: Any, project: ProjectKeys, flower_url: Any
) -> None:
    sign_in(api, project)
    flower_url(None)
    assert flower_links(api.get("/dashboard/runs?env=dev").text) == []

    flower_url("http://127.0.0.1:5555/")
    page = api.get("/dashboard/runs?env=dev").text
    assert flower_links(page) == ["http://127.0.0.1:5555/"]
    assert 'rel="noopener noreferrer"' in page
    # On every page of the dashboard, not only the run list.
    assert flower_links(api.get("/dashboard/queues?env=dev").text) == ["http://127.0.0.1:5555/"]

    flower_url("javascript:alert(1)")  # only a web address becomes a link
    assert flower_links(api.get("/dashboard/runs?env=dev").text) == []


def test_the_header_shows_the_projects_ref(api: Any, project: ProjectKeys) -> None:
    sign_in(api, project)
    with transaction() as session:
        ref = session.scalar(select(Project.ref).where(Project.id == project.project_id))
    assert ref is not None
    page = api.get("/dashboard/runs?env=dev").text
    assert f"<code>{ref}</code>" in page
