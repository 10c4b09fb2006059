"""A run's trace over HTTP (``GET /api/v1/runs/{id}/trace``): runs executed by the session's
worker, their log lines written as the worker's capture writes them. The tree's assembly
from rows alone is in tests/shared/runs/test_trace.py; the official SDK reads it in
tests/e2e/node/run_trace.mjs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.api.test_public_tokens import bearer, sdk_token
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status
from tests.support.runlogs import add_line


def _trace(api: Any, run_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = api.get(f"/api/v1/runs/{run_id}/trace", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json()["trace"])


def _kinds(span: dict[str, Any]) -> list[str]:
    return [child["data"]["properties"]["kind"] for child in span["children"]]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_run_retried_twice_shows_three_attempts_with_the_backoffs_between(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.via_api(api, project, "trace-retried")
    wait_for_status(run_id, "COMPLETED")
    add_line(run_id, "first try", attempt=1)
    add_line(run_id, "boom", attempt=2, level="ERROR",
             exception="Traceback (most recent call last):\nRuntimeError: trace attempt 2 fails")

    trace = _trace(api, run_id, project.headers())

    root = trace["rootSpan"]
    assert trace["traceId"] == run_id
    assert (root["id"], root["runId"], root["data"]["message"]) == (run_id, run_id, "trace-retried")
    assert root["data"]["isPartial"] is False
    assert root["data"]["isError"] is False
    assert _kinds(root) == ["queue", "attempt", "backoff", "attempt", "backoff", "attempt"]
    attempts = [s for s in root["children"] if s["data"]["properties"]["kind"] == "attempt"]
    assert [a["data"]["properties"]["status"] for a in attempts] == ["FAILED", "FAILED",
                                                                      "COMPLETED"]
    assert [a["data"]["isError"] for a in attempts] == [True, True, False]
    assert attempts[0]["data"]["properties"]["error"]["message"] == "trace attempt 1 fails"
    # Each backoff spans from one attempt's end to the next one's start.
    spans = root["children"][1:]
    for before, gap, after in (spans[0:3], spans[2:5]):
        # (startTime has milliseconds; durations nanoseconds)
        start = _at(gap["data"]["startTime"])
        ended = _at(before["data"]["startTime"]) + _duration(before)
        assert abs((start - ended).total_seconds()) < 0.002
        next_start = _at(after["data"]["startTime"])
        assert abs((start + _duration(gap) - next_start).total_seconds()) < 0.002
        assert gap["data"]["duration"] > 0
    # Log lines are events of their attempt, the traceback with them.
    assert [e["properties"]["message"] for e in attempts[0]["data"]["events"]] == ["first try"]
    [boom] = attempts[1]["data"]["events"]
    assert boom["name"] == "log"
    assert boom["properties"]["level"] == "ERROR"
    assert "RuntimeError" in boom["properties"]["exception"]
    assert attempts[2]["data"].get("events", []) == []
    # Every span names its parent.
    assert all(s["parentId"] == run_id for s in root["children"])


def _duration(span: dict[str, Any]) -> Any:
    from datetime import timedelta

    return timedelta(microseconds=span["data"]["duration"] / 1000)


def test_a_parent_shows_its_checkpoint_and_child_under_the_attempt_that_made_them(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    parent = triggers.via_api(api, project, "trace-parent")
    wait_for_status(parent, "COMPLETED")
    child_id = wait_for_status(wait_for(lambda: _child_of(parent)), "COMPLETED").id

    root = _trace(api, parent, project.headers())["rootSpan"]

    assert _kinds(root) == ["queue", "attempt"]
    attempt = root["children"][1]
    assert _kinds(attempt) == ["checkpoint", "child"]
    checkpoint, child = attempt["children"]
    assert checkpoint["data"]["duration"] == 0
    assert checkpoint["data"]["properties"]["checkpoint"] == 1
    assert (child["id"], child["runId"], child["parentId"]) == (child_id, child_id, attempt["id"])
    assert child["data"]["message"] == "trace-child"
    assert child["data"]["properties"]["linkedRunId"] == child_id
    assert child["data"]["properties"]["status"] == "COMPLETED"
    # The child's own trace belongs to the parent's: the same trace id.
    assert _trace(api, child_id, project.headers())["traceId"] == parent


def _child_of(parent: str) -> str | None:
    from sqlalchemy import select

    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.models import Run

    with transaction() as session:
        return session.scalar(select(Run.id).where(Run.parent_run_id == parent))


def test_past_the_trace_limit_the_root_says_the_lines_were_cut(
    api: Any, project: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprise_server.shared.runs import trace

    monkeypatch.setattr(trace, "TRACE_LOG_LIMIT", 2)
    run_id = triggers.via_api(api, project, delay="1h")
    for n in range(3):
        add_line(run_id, f"line {n}")

    root = _trace(api, run_id, project.headers())["rootSpan"]

    assert [e["properties"]["message"] for e in root["data"]["events"]] == ["line 0", "line 1"]
    assert root["data"]["properties"]["logsTruncated"] is True


def test_a_waiting_run_has_an_open_queue_span(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(api, project, queue="nobody-serves-this")

    root = _trace(api, run_id, project.headers())["rootSpan"]

    assert root["data"]["isPartial"] is True
    [queue] = root["children"]
    assert queue["data"]["properties"]["kind"] == "queue"
    assert queue["data"]["isPartial"] is True
    assert queue["data"]["duration"] >= 0
    assert queue["data"]["message"] == "Queued in nobody-serves-this"


def test_a_public_token_reads_only_the_traces_its_scopes_name(
    api: Any, project: ProjectKeys
) -> None:
    mine = triggers.via_api(api, project, delay="1h", tags=["trace-tag"])
    other = triggers.via_api(api, project, delay="1h")

    add_line(mine, "secret-ish line")
    for scopes in ([f"read:runs:{mine}"], ["read:tags:trace-tag"], ["read:runs"]):
        token = bearer(sdk_token(project, scopes))
        assert _trace(api, mine, token)["rootSpan"]["id"] == mine
        # Lines logged outside any attempt hang on the run; a public token reads them too.
        [seen] = _trace(api, mine, token)["rootSpan"]["data"]["events"]
        assert seen["properties"]["message"] == "secret-ish line"
        refused = api.get(f"/api/v1/runs/{other}/trace", headers=token)
        if scopes == ["read:runs"]:
            assert refused.status_code == 200
        else:
            assert (refused.status_code, refused.json()) == (404, {"error": "Run not found"})
    [line] = _trace(api, mine, project.headers())["rootSpan"]["data"]["events"]
    assert line["properties"]["message"] == "secret-ish line"
    # Another environment's key, or a token of another environment, sees nothing.
    assert api.get(f"/api/v1/runs/{mine}/trace",
                   headers=project.headers("staging")).status_code == 404
    staging = bearer(sdk_token(project, ["read:runs"], env="staging"))
    assert api.get(f"/api/v1/runs/{mine}/trace", headers=staging).status_code == 404
    assert api.get("/api/v1/runs/not-a-run/trace", headers=project.headers()).status_code == 400
    assert api.get(f"/api/v1/runs/{mine}/trace").status_code == 401


def test_a_public_token_reads_only_the_logs_and_events_its_scopes_name(
    api: Any, project: ProjectKeys
) -> None:
    mine = triggers.via_api(api, project, delay="1h", tags=["logs-tag"])
    other = triggers.via_api(api, project, "trace-child", delay="1h")
    add_line(mine, "my line")
    add_line(other, "another run's line")

    def logs(run_id: str, headers: dict[str, str]) -> Any:
        return api.get(f"/api/v1/runs/{run_id}/logs", headers=headers)

    def events(run_id: str, headers: dict[str, str]) -> Any:
        return api.get(f"/api/v1/runs/{run_id}/events", headers=headers)

    granting = ([f"read:runs:{mine}"], ["read:tags:logs-tag"], ["read:tasks:test-echo"],
                ["read:runs"], ["read:all"])
    for scopes in granting:
        token = bearer(sdk_token(project, scopes))
        read = logs(mine, token)
        assert read.status_code == 200, (scopes, read.text)
        assert [line["message"] for line in read.json()["data"]] == ["my line"]
        read = events(mine, token)
        assert read.status_code == 200, (scopes, read.text)
        assert [event["message"] for event in read.json()["events"]] == ["my line"]
        for route in (logs, events):
            refused = route(other, token)
            if scopes in (["read:runs"], ["read:all"]):  # every run of the environment
                assert refused.status_code == 200
                assert "another run's line" in refused.text
            else:
                assert (refused.status_code, refused.json()) == (404, {"error": "Run not found"})
    # Scopes naming something else, or not reading, read neither route of either run.
    for scopes in ([f"read:runs:{other}x"], ["read:tags:other-tag"], ["read:tasks:trace-child"],
                   ["trigger:tasks:test-echo"], ["write:runs"], []):
        token = bearer(sdk_token(project, scopes))
        for route in (logs, events):
            refused = route(mine, token)
            assert (refused.status_code, refused.json()) == (404, {"error": "Run not found"}), (
                scopes, route.__name__)
            assert "my line" not in refused.text
    # A token of another environment, even reading everything, sees nothing of this one.
    staging = bearer(sdk_token(project, ["read:all"], env="staging"))
    for route in (logs, events):
        assert route(mine, staging).status_code == 404
        assert route(mine, {}).status_code == 401


def test_one_span_with_its_events(api: Any, project: ProjectKeys, celery_worker: Any) -> None:
    run_id = triggers.via_api(api, project, "trace-retried")
    wait_for_status(run_id, "COMPLETED")
    add_line(run_id, "third time", attempt=3, attributes={"user": "ada"})

    span = api.get(f"/api/v1/runs/{run_id}/spans/{run_id}:attempt:3", headers=project.headers())

    assert span.status_code == 200, span.text
    body = span.json()
    assert (body["spanId"], body["parentId"], body["entityType"]) == (
        f"{run_id}:attempt:3", run_id, "attempt")
    [event] = body["events"]
    assert event["properties"]["attributes"] == {"user": "ada"}
    assert api.get(f"/api/v1/runs/{run_id}/spans/{run_id}", headers=project.headers()
                   ).json()["parentId"] is None
    missing = api.get(f"/api/v1/runs/{run_id}/spans/nope", headers=project.headers())
    assert (missing.status_code, missing.json()) == (404, {"error": "Span not found"})


def test_the_paged_trace_lists_the_same_spans_flat(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.via_api(api, project, "trace-retried")
    wait_for_status(run_id, "COMPLETED")
    tree = _trace(api, run_id, project.headers())["rootSpan"]

    seen: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    after = None
    while True:
        params = {"page[size]": "2", **({"page[after]": after} if after else {})}
        page = api.get(f"/api/v1/runs/{run_id}/trace", params=params, headers=project.headers())
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= 2
        seen += body["data"]
        failures += body["attemptFailures"]
        after = body["pagination"].get("next")
        if after is None:
            break

    assert [s["id"] for s in seen] == [run_id] + [s["id"] for s in tree["children"]]
    assert [s.get("attemptNumber") for s in seen if "attempt:" in s["id"]] == [1, 2, 3]
    assert [(f["attemptNumber"], f["runId"]) for f in failures] == [(1, run_id), (2, run_id)]
    refused = api.get(f"/api/v1/runs/{run_id}/trace", params={"page[size]": "0"},
                      headers=project.headers())
    assert refused.status_code == 400
    assert "page[size]" in refused.json()["error"]
