"""The runs list over plain HTTP: an empty page says why it is empty."""

from __future__ import annotations

from typing import Any

from tests.api.test_dashboard_queues import sign_in
from tests.support.fixtures import ProjectKeys


def test_an_environment_without_runs_says_so_and_how_to_start_one(
    api: Any, project: ProjectKeys
) -> None:
    sign_in(api, project)
    page = api.get("/dashboard/runs?env=dev").text
    assert "No runs in dev yet: trigger one with" in page
    assert "No runs match" not in page
    filtered = api.get("/dashboard/runs?env=dev&task=nothing-by-this-name").text
    assert "No runs match these filters." in filtered
