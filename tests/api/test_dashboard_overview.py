"""The Overview page over plain HTTP: a group larger than the ids a bulk action takes is
replayed by the filter that selects exactly it (the selection keeps the fingerprint), the
page without a session, and ignore without the CSRF token. The browser tests in
tests/api/dashboard/test_overview.py drive the page in Chromium."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import text

from reprise_server.api.dashboard import overview
from reprise_server.shared.db import transaction
from reprise_server.shared.overview.models import IgnoredErrorGroup
from reprise_server.shared.runs.fingerprints import fingerprint
from tests.api.test_dashboard_queues import csrf, sign_in
from tests.support.fixtures import ProjectKeys, wait_for
from tests.support.overview import fail_in_db, set_times


def test_a_group_over_the_id_limit_is_replayed_by_the_filter_selecting_exactly_it(
    api: Any, project: ProjectKeys, monkeypatch: pytest.MonkeyPatch, celery_worker: Any
) -> None:
    monkeypatch.setattr(overview, "MAX_RUN_IDS", 2)
    group = [fail_in_db(project, "test-echo", "TimeoutError", f"Timeout after {n}s")
             for n in range(3)]
    fail_in_db(project, "test-echo", "TimeoutError", "Deadline of job 4 passed")  # another
    fail_in_db(project, "test-fail-until", "TimeoutError", "Timeout after 9s")  # another task
    set_times(fail_in_db(project, "test-echo", "TimeoutError", "Timeout after 1s"),
              created_at=-7200)  # before the window
    sign_in(api, project)
    page = api.get("/dashboard/overview?env=dev").text
    expected = fingerprint("TimeoutError", "Timeout after 1s")
    replay = re.search(rf'href="(/dashboard/overview/replay\?[^"]*error={expected}[^"]*)"', page)
    assert replay is not None

    moved = api.get(replay.group(1).replace("&amp;", "&"), follow_redirects=False)
    assert moved.status_code == 303
    target = urlsplit(moved.headers["location"])
    assert target.path == "/dashboard/bulk/new"
    query = dict(parse_qsl(target.query))
    assert (query["task"], query["error"], query["action"]) == ("test-echo", expected, "replay")
    assert query["status"] == "CRASHED,FAILED,SYSTEM_FAILURE,TIMED_OUT"

    preview = api.get(moved.headers["location"])
    assert 'data-preview-count="3"' in preview.text
    created = api.post("/dashboard/bulk", data={
        **query, "csrf_token": csrf(preview.text)}, follow_redirects=False)
    assert created.status_code == 303, created.text
    bulk_id = created.headers["location"].split("/bulk/")[1].split("?")[0]
    body = api.get(f"/api/v1/bulk-actions/{bulk_id}", headers=project.headers()).json()
    assert body["counts"]["total"] == 3
    assert body["selection"]["errorFingerprint"] == expected
    assert body["selection"]["taskIdentifiers"] == ["test-echo"]
    # The worker works through it: exactly the group's runs are replayed.
    wait_for(lambda: api.get(f"/api/v1/bulk-actions/{bulk_id}",
                             headers=project.headers()).json()["status"] == "COMPLETED" or None,
             what="the bulk replay completed", timeout=30)
    with transaction() as session:
        replayed = session.scalars(text(
            "SELECT replayed_from FROM runs WHERE environment_id = :env AND replayed_from "
            "IS NOT NULL"), {"env": project.environment_ids["dev"]}).all()
    assert sorted(replayed) == sorted(group)


def test_the_page_needs_a_session_ignore_its_csrf_token_and_a_group_its_fingerprint(
    api: Any, project: ProjectKeys
) -> None:
    assert api.get("/dashboard/overview?env=dev", follow_redirects=False).status_code == 303
    fail_in_db(project, "test-echo", "KeyError", "missing 'a'")
    sign_in(api, project)
    for window in ("hour", "day", "week", "nonsense"):
        shown = api.get(f"/dashboard/overview?env=dev&window={window}")
        assert shown.status_code == 200
        assert 'data-chart="runs"' in shown.text
    refused = api.post("/dashboard/overview/ignore", data={
        "csrf_token": "wrong", "env": "dev", "task": "test-echo",
        "error": fingerprint("KeyError", "missing 'a'"), "name": "KeyError", "message": "m"})
    assert refused.status_code == 403
    token = csrf(api.get("/dashboard/overview?env=dev").text)
    for task, error in (("", "0123456789abcdef"), ("test-echo", "not-a-fingerprint")):
        bad = api.post("/dashboard/overview/ignore", data={
            "csrf_token": token, "env": "dev", "task": task, "error": error})
        assert bad.status_code == 400
        assert api.get(f"/dashboard/overview/replay?env=dev&task={task}&error={error}"
                       "&from=2026-01-01&to=2026-01-02").status_code == 400
    with transaction() as session:
        assert session.query(IgnoredErrorGroup).filter_by(
            environment_id=project.environment_ids["dev"]).count() == 0
