"""``/api/v1/bulk-actions``: replay, cancel and reschedule by ids or by filter,
worked through in batches by the session's worker, with progress, abort and dry run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support import triggers
from tests.support.commands import count
from tests.support.fixtures import ProjectKeys, run_row, wait_for, wait_for_status


def _bulk(api: Any, project: ProjectKeys, body: Any, env: str = "dev") -> Any:
    return api.post("/api/v1/bulk-actions", json=body, headers=project.headers(env))


def _done(api: Any, project: ProjectKeys, bulk_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        got = api.get(f"/api/v1/bulk-actions/{bulk_id}", headers=project.headers()).json()
        return got if got["status"] != "PENDING" else None

    return wait_for(probe, timeout=30, what=f"bulk action {bulk_id} to finish")


def _failed_runs(api: Any, project: ProjectKeys, n: int) -> list[str]:
    ids = [triggers.via_api(api, project, task="test-fail-until", payload={"i": i},
                           maxAttempts=1) for i in range(n)]
    for run_id in ids:
        wait_for_status(run_id, "FAILED")
    return ids


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 2 runs, so a handful of runs takes several batches."""
    from reprise_server.shared.settings import get_settings

    monkeypatch.setattr(get_settings(), "bulk_batch_size", 2)


def test_bulk_replay_by_filter_replays_each_matching_run_once_in_batches(
    api: Any, project: ProjectKeys, celery_worker: Any, small_batches: None
) -> None:
    failed = _failed_runs(api, project, 5)
    other = triggers.via_api(api, project, task="test-echo")
    wait_for_status(other, "COMPLETED")

    response = _bulk(api, project, {"action": "replay", "name": "after the fix",
                                    "filter": {"status": "FAILED",
                                               "taskIdentifier": ["test-fail-until"]}})

    assert response.status_code == 202, response.text
    bulk_id = response.json()["id"]
    assert bulk_id.startswith("bulk_")
    done = _done(api, project, bulk_id)
    assert done["status"] == "COMPLETED"
    assert done["type"] == "REPLAY"
    assert done["name"] == "after the fix"
    assert done["counts"] == {"total": 5, "success": 5, "failure": 0}
    assert done["completedAt"] >= done["createdAt"]
    for run_id in failed:
        replays = api.get(f"/api/v1/runs/{run_id}/commands", headers=project.headers()).json()
        assert [c["kind"] for c in replays["data"]] == ["replay"]
        assert replays["data"][0]["status"] == "APPLIED"
    made = api.get("/api/v1/runs", params={"filter[bulkAction]": bulk_id},
                   headers=project.headers()).json()["data"]
    assert len(made) == 5
    sources = {run_row(r["id"]).replayed_from for r in made}
    assert sources == set(failed)
    assert count("bulk_action_items") == 5


def test_bulk_cancel_by_ids_counts_finished_runs_as_failures(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    delayed = [triggers.via_api(api, project, delay="1h") for _ in range(3)]
    finished = triggers.via_api(api, project)
    wait_for_status(finished, "COMPLETED")

    response = _bulk(api, project, {"action": "cancel", "runIds": [*delayed, finished]})

    assert response.status_code == 202, response.text
    done = _done(api, project, response.json()["id"])
    assert done["counts"] == {"total": 4, "success": 3, "failure": 1}
    assert done["type"] == "CANCEL"
    assert {run_row(r).status for r in delayed} == {"CANCELED"}
    assert run_row(finished).status == "COMPLETED"


def test_bulk_reschedule_moves_every_delayed_run_of_the_filter(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    delayed = [triggers.via_api(api, project, delay="1h", tags=["move-me"]) for _ in range(3)]
    untouched = triggers.via_api(api, project, delay="1h", tags=["stay"])

    response = _bulk(api, project, {"action": "reschedule", "delay": "3h",
                                    "filter": {"tag": "move-me"}})

    assert response.status_code == 202, response.text
    done = _done(api, project, response.json()["id"])
    assert done["counts"] == {"total": 3, "success": 3, "failure": 0}
    due = datetime.fromisoformat(done["delayedUntil"])
    assert timedelta(hours=2.9) < due - datetime.now(UTC) < timedelta(hours=3.1)
    assert {run_row(r).delayed_until for r in delayed} == {due}
    assert run_row(untouched).delayed_until < due - timedelta(hours=1)


def test_dry_run_counts_and_names_the_runs_and_writes_nothing(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    ids = [triggers.via_api(api, project, delay="1h") for _ in range(3)]

    response = _bulk(api, project, {"action": "cancel", "dryRun": True,
                                    "filter": {"status": ["DELAYED"]}})

    assert response.status_code == 200, response.text
    assert response.json() == {"dryRun": True, "count": 3, "runIds": list(reversed(ids))}
    assert count("bulk_actions") == 0
    assert {run_row(r).status for r in ids} == {"DELAYED"}


def test_a_filter_without_a_time_covers_the_last_seven_days(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    old, recent = (triggers.via_api(api, project, delay="1h") for _ in range(2))
    with transaction() as session:
        session.execute(text("UPDATE runs SET created_at = now() - interval '8 days' "
                             "WHERE id = :id"), {"id": old})

    preview = _bulk(api, project, {"action": "cancel", "dryRun": True,
                                   "filter": {"status": "DELAYED"}}).json()
    wider = _bulk(api, project, {"action": "cancel", "dryRun": True,
                                 "filter": {"status": "DELAYED", "period": "30d"}}).json()

    assert preview["runIds"] == [recent]
    assert wider["count"] == 2


def test_abort_stops_a_throttled_replay_before_its_next_batch(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    failed = _failed_runs(api, project, 4)

    response = _bulk(api, project, {"action": "replay", "runIds": failed, "maxPerSecond": 1})
    bulk_id = response.json()["id"]
    wait_for(lambda: api.get(f"/api/v1/bulk-actions/{bulk_id}",
                             headers=project.headers()).json()["counts"]["success"] >= 1,
             what="the first batch of one run")
    aborted = api.post(f"/api/v1/bulk-actions/{bulk_id}/abort", headers=project.headers())

    assert aborted.status_code == 200, aborted.text
    assert aborted.json() == {"id": bulk_id}
    state = api.get(f"/api/v1/bulk-actions/{bulk_id}", headers=project.headers()).json()
    assert state["status"] == "ABORTED"
    assert state["counts"]["success"] < 4
    again = api.post(f"/api/v1/bulk-actions/{bulk_id}/abort", headers=project.headers())
    assert again.status_code == 409
    assert again.headers["x-should-retry"] == "false"
    assert again.json() == {"error": f"Bulk action already aborted: {bulk_id}"}


def test_list_is_newest_first_with_cursors_and_other_environments_are_invisible(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    ids = [_bulk(api, project, {"action": "cancel", "runIds": [run_id], "name": f"n{i}"})
           .json()["id"] for i in range(3)]

    first = api.get("/api/v1/bulk-actions", params={"page[size]": 2},
                    headers=project.headers()).json()
    second = api.get("/api/v1/bulk-actions",
                     params={"page[size]": 2, "page[after]": first["pagination"]["next"]},
                     headers=project.headers()).json()

    assert [b["id"] for b in first["data"]] == [ids[2], ids[1]]
    assert [b["id"] for b in second["data"]] == [ids[0]]
    assert second["pagination"] == {"previous": ids[0]}
    other = api.get(f"/api/v1/bulk-actions/{ids[0]}", headers=project.headers("prod"))
    assert other.status_code == 404
    assert other.json() == {"error": "Bulk action not found"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "replay"}, "Exactly one of filter or runIds must be provided"),
        ({"action": "replay", "filter": {}}, "At least one filter must be provided"),
        ({"action": "replay", "filter": {"tag": " "}}, "At least one filter must be provided"),
        ({"action": "cancel", "filter": {"schedule": "sched_1"}},
         "filter.schedule cannot be applied by Reprise"),
        ({"action": "replay", "filter": {"status": "FAILED"}, "targetRegion": "eu"},
         "targetRegion cannot be honoured"),
        ({"action": "replay", "runIds": ["run_" + "a" * 20] * 2, "oops": 1}, "oops"),
        ({"action": "replay", "runIds": [f"run_{i:020d}" for i in range(501)]},
         "Too many runIds (501). Maximum is 500."),
        ({"action": "cancel", "runIds": ["nope"]}, "runIds has an invalid run ID: nope"),
        ({"action": "cancel", "filter": {"status": "FAILED"}, "maxPerSecond": 5},
         "maxPerSecond applies to a bulk replay only"),
        ({"action": "reschedule", "filter": {"status": "FAILED"}, "delay": "1h"},
         "acts on DELAYED runs only"),
        ({"action": "reschedule", "filter": {"tag": "x"}}, "delay is required"),
        ({"action": "reschedule", "filter": {"tag": "x"}, "delay": "soon"}, "Invalid delay: soon"),
        ({"action": "cancel", "filter": {"status": "NOPE"}}, "unknown status: NOPE"),
        ({"action": "explode", "runIds": ["run_" + "a" * 20]}, "action"),
        ({"action": "cancel", "filter": {"tag": "a\u0000b"}}, "contains a NUL character"),
        ({"action": "cancel", "filter": {"from": 1e300}}, "filter.from must be an ISO-8601"),
        ({"action": "cancel", "filter": {"period": "1d", "from": "2026-01-01T00:00:00Z"}},
         "filter.period and filter.from both set a start"),
        ({"action": "reschedule", "filter": {"tag": "x"}, "delay": "99999999999999w"},
         "Invalid delay: 99999999999999w"),
    ],
)
def test_bad_requests_are_400_naming_the_problem_and_write_nothing(
    api: Any, project: ProjectKeys, body: Any, message: str
) -> None:
    response = _bulk(api, project, body)

    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert count("bulk_actions") == 0


def test_a_wrong_key_is_401_before_a_bad_body(api: Any) -> None:
    response = api.post("/api/v1/bulk-actions", json={"action": "nope"},
                        headers={"Authorization": "Bearer tr_dev_wrong"})

    assert response.status_code == 401


def test_a_run_that_cannot_be_replayed_is_a_failure_and_the_others_are_replayed(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    good, ghost = (triggers.via_api(api, project, delay="1h") for _ in range(2))
    with transaction() as session:  # a task no version of the project registers any more
        session.execute(text("UPDATE runs SET task_identifier = 'gone-task' WHERE id = :id"),
                        {"id": ghost})

    response = _bulk(api, project, {"action": "replay", "runIds": [good, ghost]})

    done = _done(api, project, response.json()["id"])
    assert done["counts"] == {"total": 2, "success": 1, "failure": 1}
    with transaction() as session:
        items = dict(session.execute(text(
            "SELECT run_id, reason FROM bulk_action_items WHERE bulk_action_id = :id"),
            {"id": done["id"]}).all())
        replayed = session.execute(text(
            "SELECT replayed_from FROM runs WHERE replayed_from IS NOT NULL")).scalars().all()
    assert items[good] is None
    assert "no version of this project registers" in items[ghost]
    assert replayed == [good]
