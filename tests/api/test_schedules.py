"""``/api/v1/schedules`` and ``/api/v1/timezones`` in Trigger.dev's shapes: create (idempotent
on deduplicationKey), retrieve, list in pages, replace, (de)activate, delete; bad input is a
400 naming it and writes nothing; an unknown task is a 404; runs show and filter by their
schedule."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fixtures import ProjectKeys
from tests.support.schedules import Scheduler, clean_schedules, fire, scheduler

__all__ = ["clean_schedules", "scheduler"]

ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def create(api: Any, project: ProjectKeys, env: str = "dev", **body: Any) -> Any:
    return api.post("/api/v1/schedules", json=body, headers=project.headers(env))


def count_schedules() -> int:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        return int(session.execute(text("SELECT count(*) FROM schedules")).scalar_one())


def test_create_then_retrieve_shows_the_schedule_object(
    api: Any, project: ProjectKeys, clean_schedules: None
) -> None:
    response = create(api, project, task="test-echo", cron="0 9 * * 1-5",
                      timezone="Europe/London", externalId="user_1", deduplicationKey="k1")
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["id"].startswith("sched_")
    assert {k: created[k] for k in ("type", "task", "active", "timezone", "externalId",
                                     "deduplicationKey")} == {
        "type": "IMPERATIVE", "task": "test-echo", "active": True,
        "timezone": "Europe/London", "externalId": "user_1", "deduplicationKey": "k1",
    }
    assert created["generator"] == {
        "type": "CRON", "expression": "0 9 * * 1-5",
        "description": created["generator"]["description"],
    }
    assert "09:00" in created["generator"]["description"]
    assert created["environments"] == [
        {"id": project.environment_ids["dev"], "type": "DEVELOPMENT"}
    ]
    assert len(created["nextRuns"]) == 5
    assert created["nextRun"] == created["nextRuns"][0]
    assert created["nextRuns"] == sorted(created["nextRuns"])

    fetched = api.get(f"/api/v1/schedules/{created['id']}", headers=project.headers())
    assert fetched.status_code == 200
    assert fetched.json() == created
    # Another environment's key does not see it.
    other = api.get(f"/api/v1/schedules/{created['id']}", headers=project.headers("prod"))
    assert (other.status_code, other.json()) == (404, {"error": "Schedule not found"})


def test_create_is_idempotent_on_the_deduplication_key(
    api: Any, project: ProjectKeys, clean_schedules: None
) -> None:
    body = {"task": "test-echo", "cron": "0 * * * *", "deduplicationKey": "nightly"}
    first = create(api, project, **body).json()
    again = create(api, project, **body).json()
    assert again["id"] == first["id"]
    # The same key with other values updates that schedule (Trigger.dev's semantics).
    changed = create(api, project, **{**body, "cron": "30 * * * *"}).json()
    assert changed["id"] == first["id"]
    assert changed["generator"]["expression"] == "30 * * * *"
    # Without a key (or with "", as Trigger.dev reads it) every create is a new schedule,
    # and no key is shown.
    plain = create(api, project, task="test-echo", cron="0 * * * *", deduplicationKey="").json()
    assert plain["id"] != first["id"]
    assert "deduplicationKey" not in plain
    # Keys are per environment.
    prod = create(api, project, "prod", **body).json()
    assert prod["id"] != first["id"]
    assert count_schedules() == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"task": "test-echo", "cron": "61 * * * *"},
         "Invalid cron expression '61 * * * *': bad minute"),
        ({"task": "test-echo", "cron": "every day"},
         "Invalid cron expression 'every day': wrong number of fields"),
        ({"task": "test-echo", "cron": "0 * * * *", "timezone": "Mars/Olympus"},
         "Invalid IANA timezone: 'Mars/Olympus' (GET /api/v1/timezones lists the valid ones)"),
        ({"task": "test-echo"}, "cron: Field required"),
        ({"task": "test-echo", "cron": "0 * * * *", "window": "30m"},
         "window: schedule windows are not supported by Reprise; remove window"),
        ({"task": "test-echo", "cron": "0 * * * *", "color": "red"},
         "color: Extra inputs are not permitted"),
        ({"task": "test-echo", "cron": "0 * * * *", "externalId": 7},
         "externalId: Input should be a valid string"),
        ({"task": "test-echo", "cron": "0 * * * *", "externalId": "a\u0000b"},
         "externalId contains a NUL character (U+0000), which cannot be stored"),
        ({"task": "bad task!", "cron": "0 * * * *"},
         "task must be 1 to 128 letters, digits or . _ - : /"),
    ],
)
def test_bad_input_is_a_400_naming_it_and_writes_nothing(
    api: Any, project: ProjectKeys, clean_schedules: None, body: dict[str, Any], message: str
) -> None:
    response = create(api, project, **body)
    assert (response.status_code, response.json()) == (400, {"error": message})
    assert count_schedules() == 0


def test_a_schedule_for_an_unknown_task_is_a_404(
    api: Any, project: ProjectKeys, clean_schedules: None
) -> None:
    response = create(api, project, task="no-such-task", cron="0 * * * *")
    assert response.status_code == 404
    assert response.json() == {
        "error": "Task not found: no worker has registered a task 'no-such-task'"
    }
    assert count_schedules() == 0


def test_a_wrong_key_is_401_before_anything_else(api: Any, clean_schedules: None) -> None:
    response = api.post("/api/v1/schedules", json={"cron": "61 * * * *"},
                        headers={"Authorization": "Bearer tr_dev_nope"})
    assert response.status_code == 401


def test_list_is_newest_first_in_numbered_pages(
    api: Any, project: ProjectKeys, clean_schedules: None
) -> None:
    ids = [create(api, project, task="test-echo", cron=f"{i} * * * *").json()["id"]
           for i in range(5)]
    first = api.get("/api/v1/schedules?perPage=2", headers=project.headers()).json()
    assert [s["id"] for s in first["data"]] == ids[::-1][:2]
    assert first["pagination"] == {"currentPage": 1, "totalPages": 3, "count": 5}
    last = api.get("/api/v1/schedules?perPage=2&page=3", headers=project.headers()).json()
    assert [s["id"] for s in last["data"]] == [ids[0]]
    assert api.get("/api/v1/schedules", headers=project.headers("prod")).json()["data"] == []
    bad = api.get("/api/v1/schedules?perPage=500", headers=project.headers())
    assert (bad.status_code, bad.json()) == (
        400, {"error": "perPage must be a whole number from 1 to 100"}
    )
    assert api.get("/api/v1/schedules?page=x", headers=project.headers()).status_code == 400


def test_update_replaces_and_moves_the_next_tick(
    api: Any, project: ProjectKeys, clean_schedules: None
) -> None:
    created = create(api, project, task="test-echo", cron="0 0 1 1 *", timezone="Asia/Tokyo",
                     externalId="x").json()
    response = api.put(f"/api/v1/schedules/{created['id']}", headers=project.headers(),
                       json={"task": "hello-world", "cron": "*/10 * * * *"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["task"] == "hello-world"
    assert updated["timezone"] == "UTC"  # PUT replaces: no timezone is UTC again
    assert "externalId" not in updated
    assert updated["nextRun"] < created["nextRun"]
    bad = api.put(f"/api/v1/schedules/{created['id']}", headers=project.headers(),
                  json={"task": "hello-world", "cron": "* * * * * * *"})
    assert bad.status_code == 400
    missing = api.put("/api/v1/schedules/sched_nope", headers=project.headers(),
                      json={"task": "hello-world", "cron": "* * * * *"})
    assert (missing.status_code, missing.json()) == (404, {"error": "Schedule not found"})


def test_deactivate_activate_and_delete(
    api: Any, project: ProjectKeys, scheduler: Scheduler
) -> None:
    sid = create(api, project, task="test-echo", cron="* * * * *").json()["id"]
    off = api.post(f"/api/v1/schedules/{sid}/deactivate", headers=project.headers()).json()
    assert off["active"] is False
    assert "nextRun" not in off
    assert off["nextRuns"] == []
    on = api.post(f"/api/v1/schedules/{sid}/activate", headers=project.headers()).json()
    assert on["active"] is True
    assert on["nextRun"]
    deleted = api.delete(f"/api/v1/schedules/{sid}", headers=project.headers())
    assert deleted.json() == {"id": sid}
    assert api.get(f"/api/v1/schedules/{sid}", headers=project.headers()).status_code == 404
    assert api.delete(f"/api/v1/schedules/{sid}", headers=project.headers()).status_code == 404


def test_timezones_need_no_key(api: Any) -> None:
    zones = api.get("/api/v1/timezones").json()["timezones"]
    assert zones[0] == "UTC"
    assert "America/New_York" in zones
    without = api.get("/api/v1/timezones?excludeUtc=true").json()["timezones"]
    assert "UTC" not in without
    assert len(without) == len(zones) - 1


def test_a_tick_run_shows_its_schedule_and_runs_list_filters_by_it(
    api: Any, project: ProjectKeys, scheduler: Scheduler
) -> None:
    sid = create(api, project, task="test-echo", cron="*/5 * * * *", externalId="u1",
                 deduplicationKey="five").json()["id"]
    other = create(api, project, task="test-echo", cron="*/5 * * * *").json()["id"]
    scheduler.make_due(sid)
    scheduler.make_due(other)
    assert fire() == 2
    [(run_id, _, _)] = scheduler.runs(sid)
    run = api.get(f"/api/v3/runs/{run_id}", headers=project.headers()).json()
    assert run["schedule"] == {
        "id": sid, "externalId": "u1", "deduplicationKey": "five",
        "generator": {"type": "CRON", "expression": "*/5 * * * *",
                      "description": run["schedule"]["generator"]["description"]},
    }
    assert run["payload"]["scheduleId"] == sid
    listed = api.get(f"/api/v1/runs?filter[schedule]={sid}", headers=project.headers()).json()
    assert [r["id"] for r in listed["data"]] == [run_id]
    none = api.get("/api/v1/runs?filter[schedule]=sched_none", headers=project.headers()).json()
    assert none["data"] == []
