"""``POST /api/v1/runs/{runId}/reschedule``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reprise_server.shared.db import db_now, transaction
from reprise_server.shared.durations import parse_datetime
from tests.support import triggers
from tests.support.commands import commands_for, count, post
from tests.support.fixtures import ProjectKeys, run_row, wait_for_status


def _reschedule(api: Any, project: ProjectKeys, run_id: str, delay: Any) -> Any:
    return api.post(
        f"/api/v1/runs/{run_id}/reschedule", json={"delay": delay}, headers=project.headers()
    )


def _db_now() -> datetime:
    with transaction() as session:
        return db_now(session)


DURATIONS = [("1h", 3600), ("1h30m", 5400), ("1hr", 3600), ("2d", 172800), ("1w", 604800),
             ("90s", 90), ("10m", 600)]
DATES = [("2030-01-01T00:00:00.000Z", "2030-01-01T00:00:00.000Z"),
         ("2030-06-01T12:30:00+02:00", "2030-06-01T10:30:00.000Z"),
         ("2031-02-03", "2031-02-03T00:00:00.000Z")]


def test_reschedule_by_a_duration_counts_from_now(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(api, project, delay="3h")
    for delay, seconds in DURATIONS:
        before = _db_now()

        response = _reschedule(api, project, run_id, delay)

        after = _db_now()
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == run_id
        assert body["status"] == "DELAYED"
        due = parse_datetime(body["delayedUntil"])
        # The API shows milliseconds; allow for the truncation.
        assert before + timedelta(seconds=seconds, milliseconds=-1) <= due, delay
        assert due <= after + timedelta(seconds=seconds), delay
        assert abs(run_row(run_id).delayed_until - due) < timedelta(milliseconds=1)


def test_reschedule_to_a_date(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    token = run_row(run_id).schedule_token
    for delay, expected in DATES:
        response = _reschedule(api, project, run_id, delay)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["delayedUntil"] == expected
        assert body["attempts"] == []
        assert "relatedRuns" in body
        assert None not in body.values()
        token += 1
        assert run_row(run_id).schedule_token == token
    commands = commands_for(run_id)
    assert [(c.kind, c.status, c.result["delayedUntil"]) for c in commands] == [
        ("reschedule", "APPLIED", expected) for _, expected in DATES]


def test_reschedule_within_the_horizon_arms_a_timer_for_the_new_token(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")  # beyond the horizon: no timer yet
    assert run_row(run_id).timer_armed_token is None

    assert _reschedule(api, project, run_id, "2m").status_code == 200

    row = run_row(run_id)
    assert row.timer_armed_token == row.schedule_token


def test_rescheduled_run_is_promoted_at_the_new_time(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    new_time = datetime.now(UTC) + timedelta(seconds=1)

    response = _reschedule(api, project, run_id, new_time.isoformat())

    assert response.status_code == 200, response.text
    wait_for_status(run_id, "COMPLETED")
    assert run_row(run_id).queued_at >= parse_datetime(response.json()["delayedUntil"])


def test_reschedule_errors_write_nothing(api: Any, project: ProjectKeys) -> None:
    delayed = triggers.via_api(api, project, delay="1h")
    queued = triggers.via_api(api, project)
    foreign = triggers.via_api(api, project, env="prod", delay="1h")
    cases: list[tuple[str, Any, int, str]] = [
        ("not-a-run", {"delay": "1h"}, 400, "Invalid or missing run ID"),
        ("run_doesnotexist00000000", {"delay": "1h"}, 404, "Run not found"),
        (foreign, {"delay": "1h"}, 404, "Run not found"),
        (delayed, None, 400, "Invalid request body: the request body is missing"),
        (delayed, "{not json", 400, ("Invalid request body: not JSON: Expecting property name "
         "enclosed in double quotes: line 1 column 2 (char 1)")),
        (delayed, {}, 400, "Invalid request body: delay: Field required"),
        (delayed, {"delay": 60}, 400, "Invalid request body: delay: Input should be a valid string"),
        (delayed, ["1h"], 400, "Invalid request body: the request body must be a JSON object"),
        (delayed, {"delay": "soon"}, 400, "Invalid delay: soon"),
        (delayed, {"delay": "0s"}, 400, "Invalid delay: 0s"),
        (delayed, {"delay": "2020-01-01T00:00:00Z"}, 400, "Invalid delay: 2020-01-01T00:00:00Z"),
        (queued, {"delay": "1h"}, 400, "Cannot reschedule a run that is not delayed"),
    ]
    snapshot = run_row(delayed)
    commands = count("commands")
    for run_id, body, status, error in cases:
        response = post(api, f"/api/v1/runs/{run_id}/reschedule", body, project.headers())
        assert (response.status_code, response.json()) == (status, {"error": error}), body
    after = run_row(delayed)
    assert (after.delayed_until, after.schedule_token, after.updated_at) == (
        snapshot.delayed_until, snapshot.schedule_token, snapshot.updated_at)
    assert count("commands") == commands


def test_reschedule_without_a_valid_key_is_401(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    for headers in ({}, {"Authorization": "Bearer tr_prod_wrong"}):
        response = api.post(f"/api/v1/runs/{run_id}/reschedule", json={"delay": "2h"},
                            headers=headers)
        assert (response.status_code, response.json()) == (
            401, {"error": "Invalid or Missing API key"})
    assert commands_for(run_id) == []


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/v1/runs/not-a-run/reschedule", {"delay": "1h"}),
     ("/api/v1/runs/run_doesnotexist00000000/reschedule", "{not json"),
     ("/api/v1/runs/run_doesnotexist00000000/reschedule", {"delay": "soon"}),
     ("/api/v1/runs/not-a-run/replay", None),
     ("/api/v1/runs/run_doesnotexist00000000/replay", "[1]")],
)
def test_a_wrong_key_is_401_before_any_other_error(api: Any, path: str, body: Any) -> None:
    response = post(api, path, body, {"Authorization": "Bearer tr_dev_wrongwrongwrong"})
    assert (response.status_code, response.json()) == (401, {"error": "Invalid or Missing API key"})
