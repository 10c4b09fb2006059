"""The official ``@trigger.dev/sdk`` (npm, pinned in node/package.json) against a live server.

Each test runs one driver script in ``node/`` that calls the SDK unchanged — configured only
with ``configure({ baseURL, accessToken })`` — and prints one JSON line per step. The SDK
validates every response with its zod schemas, so a step that returns at all proves the wire
shape; the assertions check the values.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from reprise_server.shared.db import transaction
from reprise_server.shared.projects.models import Project
from reprise_server.shared.runs.models import Run
from reprise_server.shared.settings import get_settings
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row
from tests.support.schedules import clean_schedules

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
__all__ = ["clean_schedules"]


FLAGS = (
    "isQueued",
    "isExecuting",
    "isWaiting",
    "isCompleted",
    "isSuccess",
    "isFailed",
    "isCancelled",
)


def _date(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _flags(run: dict[str, Any]) -> set[str]:
    """The run's boolean status flags that are true."""
    return {flag for flag in FLAGS if run[flag]}


def test_trigger_then_retrieve_until_completed_with_output_and_one_attempt(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("trigger_and_retrieve.mjs", project.keys["dev"])

    handle = scenario.ok("trigger")
    assert handle["id"].startswith("run_")
    assert handle["hasPublicAccessToken"]
    assert not handle.get("isCached")
    done = scenario.ok("completed")
    run = done["run"]
    assert run["id"] == handle["id"]
    assert run["status"] == "COMPLETED"
    assert _flags(run) == {"isCompleted", "isSuccess"}
    assert run["output"] == {"message": "Hello, Ada!", "runId": handle["id"], "attempt": 1}
    assert run["payload"] == {"name": "Ada", "when": "2026-01-01T00:00:00.000Z"}
    assert run["attemptCount"] == 1
    assert run["taskIdentifier"] == "hello-world"
    assert run["tags"] == ["e2e", "user_1"]
    assert run["metadata"] == {"source": "e2e"}
    assert run["ttl"] == "10m"
    assert run["datesAreDates"]
    assert set(done["statusesSeen"]) <= {"QUEUED", "DEQUEUED", "EXECUTING", "COMPLETED"}
    public = scenario.ok("retrieve-with-public-token")
    assert public == {
        "id": handle["id"],
        "status": "COMPLETED",
        "hasPayload": False,
        "hasOutput": False,
    }


def test_idempotency_key_returns_the_same_run_until_it_completes(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("idempotency.mjs", project.keys["dev"])

    first, second = scenario.ok("first"), scenario.ok("second")
    assert not first.get("isCached")
    assert second["id"] == first["id"]
    assert second["isCached"] is True
    assert scenario.ok("other-key")["id"] != first["id"]
    retrieved = scenario.ok("retrieve-first")
    assert retrieved["idempotencyKey"] == retrieved["key"]
    scenario.ok("first-completed")
    # A COMPLETED run keeps its key (only failed or expired runs release it).
    after = scenario.ok("after-completion")
    assert (after["id"], after["isCached"]) == (first["id"], True)


def test_list_auto_paginates_with_task_and_status_filters(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    with transaction() as session:
        ref = session.scalar(select(Project.ref).where(Project.id == project.project_id))
    assert ref is not None
    assert re.fullmatch(r"proj_[0-9a-z]{20}", ref)
    scenario = run_scenario("list.mjs", project.keys["dev"], E2E_RUN_COUNT="5",
                            E2E_PROJECT_REF=ref)

    triggered = scenario.ok("trigger")
    scenario.ok("all-completed")
    items = scenario.ok("list")["items"]
    assert [item["id"] for item in items] == list(reversed(triggered["ids"]))
    assert {item["status"] for item in items} == {"COMPLETED"}
    assert all(
        item["env"] == {"id": project.environment_ids["dev"], "name": "dev"} for item in items
    )
    assert scenario.ok("pages")["sizes"] == [2, 2, 1]
    assert scenario.ok("list-delayed")["ids"] == [triggered["delayedId"]]
    # runs.list(projectRef, …): the same runs, filters and pagination by the project's ref.
    assert scenario.ok("list-by-project-ref")["ids"] == list(reversed(triggered["ids"]))
    other = scenario.error("list-by-other-ref")
    assert (other["status"], other["error"]) == (404, "Project not found")
    everything = len(triggered["ids"]) + 1
    assert scenario.ok("list-created-range") == {
        "fromBeforeStart": everything,
        "toBeforeStart": 0,
        "lastHour": everything,
    }


def test_failed_run_shows_its_error_and_attempts(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("failed.mjs", project.keys["dev"])

    handle = scenario.ok("trigger")
    failed = scenario.ok("failed")
    run = failed["run"]
    assert run["status"] == "FAILED"
    assert _flags(run) == {"isCompleted", "isFailed"}
    assert run["error"]["message"] == "failing attempt 3"
    assert run["error"]["name"] == "ValueError"
    assert run["attemptCount"] == 3
    assert "output" not in run
    assert scenario.ok("list-failed")["ids"] == [handle["id"]]
    text = scenario.ok("trigger-text")
    assert (text["payload"], text["status"]) == ("just text", "DELAYED")


def test_delay_by_duration_or_date_and_cancel_of_a_delayed_run(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("cancel.mjs", project.keys["dev"])

    handle = scenario.ok("trigger-delayed")
    delayed = scenario.ok("retrieve-delayed")
    assert delayed["status"] == "DELAYED"
    assert _flags(delayed) == {"isQueued"}
    until = _date(delayed["delayedUntil"]) - datetime.now(UTC)
    assert timedelta(minutes=55) < until <= timedelta(hours=1)
    assert scenario.ok("cancel") == {"id": handle["id"]}
    canceled = scenario.ok("retrieve-canceled")
    assert canceled["status"] == "CANCELED"
    assert _flags(canceled) == {"isCompleted", "isCancelled"}
    assert scenario.ok("cancel-again") == {"id": handle["id"]}
    assert run_row(handle["id"]).status == "CANCELED"
    dated = scenario.ok("trigger-delayed-until-date")
    assert (dated["status"], dated["delayedUntil"]) == ("DELAYED", dated["at"])


def test_errors_reach_the_sdk_with_their_status_and_message(
    run_scenario: Any, project: ProjectKeys, live_server: Any
) -> None:
    scenario = run_scenario("errors.mjs", project.keys["dev"])

    unknown = scenario.error("retrieve-unknown")
    assert (unknown["status"], unknown["className"]) == (404, "NotFoundError")
    assert unknown["error"] == "Run not found"
    malformed = scenario.error("retrieve-malformed")
    assert (malformed["status"], malformed["error"]) == (400, "Invalid or missing run ID")
    assert scenario.error("trigger-unknown-task")["status"] == 404
    tags = scenario.error("trigger-eleven-tags")
    assert tags["status"] == 400
    assert "tags" in tags["error"]
    for step in ("wrong-key-retrieve", "wrong-key-trigger", "wrong-key-list"):
        error = scenario.error(step)
        assert (error["status"], error["className"]) == (401, "AuthenticationError"), step
        assert error["error"] == "Invalid or Missing API key"


def test_replay_creates_a_new_run_that_completes(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("replay.mjs", project.keys["dev"])

    original = scenario.ok("trigger")
    scenario.ok("original-completed")
    replay = scenario.ok("replay")
    assert replay["id"].startswith("run_")
    assert replay["id"] != original["id"]
    at_once = scenario.ok("retrieve-replay-at-once")
    assert at_once["id"] == replay["id"]
    assert at_once["taskIdentifier"] == "hello-world"
    run = scenario.ok("replay-completed")["run"]
    assert run["status"] == "COMPLETED"
    assert run["payload"] == {"name": "Grace"}
    assert run["output"] == {"message": "Hello, Grace!", "runId": replay["id"], "attempt": 1}
    assert run["attemptCount"] == 1
    bad = scenario.error("replay-bad-ttl")
    assert (bad["status"], bad["error"]) == (
        400, "Failed to create new run: ttl: not a duration: 'forever'")
    row = run_row(replay["id"])
    assert row.replayed_from == original["id"]
    assert row.lineage_depth == 1


def test_reschedule_with_a_duration_and_with_a_date(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("reschedule.mjs", project.keys["dev"])

    handle = scenario.ok("trigger-delayed")
    moved = scenario.ok("reschedule-duration")
    run = moved["run"]
    assert run["id"] == handle["id"]
    assert run["status"] == "DELAYED"
    assert run["datesAreDates"]
    until_ms = _date(run["delayedUntil"]).timestamp() * 1000
    two_hours_ms = 2 * 3600 * 1000
    assert moved["before"] + two_hours_ms - 1000 <= until_ms <= moved["after"] + two_hours_ms + 1000
    dated = scenario.ok("reschedule-date")
    assert dated["run"]["delayedUntil"] == dated["at"]
    retrieved = scenario.ok("retrieve")
    assert (retrieved["status"], retrieved["delayedUntil"]) == ("DELAYED", dated["at"])
    refused = scenario.error("reschedule-not-delayed")
    assert (refused["status"], refused["error"]) == (
        400,
        "Cannot reschedule a run that is not delayed",
    )


def test_large_output_is_downloaded_by_the_sdk_from_its_presigned_url(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("large_output.mjs", project.keys["dev"], E2E_OUTPUT_BYTES="614400")

    scenario.ok("trigger")
    assert scenario.ok("completed") == {
        "status": "COMPLETED",
        "blobLength": 614400,
        "hasOutputUrl": True,
    }


def test_payloads_offloaded_by_the_sdk_run_and_come_back_through_retrieve(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    # 200 KiB (over the SDK's 128 KiB offload threshold) and 5 MiB.
    scenario = run_scenario("offloaded_payload.mjs", project.keys["dev"],
                            E2E_PAYLOAD_KIB="200,5120")

    for kib in (200, 5120):
        handle = scenario.ok(f"trigger-{kib}")
        done = scenario.ok(f"completed-{kib}")
        assert done["id"] == handle["id"]
        assert done["status"] == "COMPLETED"
        # retrieve downloaded the packet from payloadPresignedUrl and decoded its superjson
        assert (done["blobLength"], done["whenIsDate"]) == (kib * 1024, True)
        assert done["output"]["message"] == "Hello, Big!"  # the worker got the real payload
        row = run_row(handle["id"])
        assert row.payload_type == "application/store"
        assert isinstance(row.payload, str)  # the packet's path, not 5 MiB inline


def test_metadata_tags_result_and_idempotency_key_reset_through_the_sdk(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    # A run that finished two hours ago: its metadata may no longer change.
    old = triggers.in_db(project, "test-echo", publish=False)
    with transaction() as session:
        session.execute(update(Run).where(Run.id == old).values(
            status="COMPLETED", finished_at=func.now() - timedelta(hours=2)))
    scenario = run_scenario("run_endpoints.mjs", project.keys["dev"], E2E_OLD_RUN_ID=old)

    flush = scenario.ok("metadata-flush")
    assert flush["before"] == {"stage": "new"}
    assert flush["after"] == {"stage": "running", "progress": {"done": 2}, "count": 3,
                              "log": ["a", "c"]}
    assert scenario.ok("metadata-replace") == {"replaced": True}
    tags = scenario.ok("tags-add")
    assert tags == {"first": "Successfully set 2 new tags.", "again": "No new tags to add",
                    "tags": ["a-tag", "b-tag"]}
    over = scenario.error("tags-over-limit")
    assert (over["status"], over["className"]) == (422, "UnprocessableEntityError")
    assert "Runs can only have 10 tags" in over["error"]
    assert scenario.ok("result-of-unfinished") is None  # the SDK's undefined for a 404
    # Canceled a moment ago: within the hour Trigger.dev allows, the flush applies.
    assert scenario.ok("metadata-after-finish") == {"replaced": True, "late": 1}
    late = scenario.error("metadata-long-after-finish")
    assert late["status"] == 422
    assert late["error"] == (
        "Cannot update metadata for a completed run: it finished more than 1 hour ago")
    assert "late" not in (run_row(old).metadata_ or {})
    canceled = scenario.ok("result-of-canceled")
    assert (canceled["ok"], canceled["error"]) == (
        False, {"type": "INTERNAL_ERROR", "code": "TASK_RUN_CANCELLED"})
    result = scenario.ok("result-of-completed")
    assert result["ok"] is True
    assert result["outputType"] == "application/json"
    assert json.loads(result["output"])["message"] == "Hello, Res!"

    keyed = scenario.ok("trigger-keyed")
    assert scenario.ok("trigger-keyed-again")["id"] == keyed["id"]
    assert scenario.ok("reset")["id"]
    assert scenario.ok("trigger-after-reset")["id"] != keyed["id"]
    assert scenario.error("reset-unknown")["status"] == 404

    first = scenario.ok("ttl-first")
    assert scenario.ok("ttl-within")["id"] == first["id"]
    assert scenario.ok("ttl-after")["id"] != first["id"]  # the 1s idempotencyKeyTTL passed


def test_options_are_honoured_or_refused_naming_them(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    version = get_settings().worker_version
    scenario = run_scenario("options.mjs", project.keys["dev"], E2E_WORKER_VERSION=version)

    unknown = scenario.error("unknown-version")
    assert (unknown["status"], unknown["className"]) == (400, "BadRequestError")
    assert "19990101.1" in unknown["error"]
    region = scenario.error("region")
    assert region["status"] == 400
    assert "options.region" in region["error"]
    assert run_row(scenario.ok("locked-to-current")["id"]).locked_version == version
    assert scenario.ok("locked-completed")["run"]["version"] == version
    for name in ("machine", "region"):
        refused = scenario.error(f"list-{name}")
        assert refused["status"] == 400, name
        assert f"filter[{name}]" in refused["error"]
    for name in ("schedule", "batch", "bulkAction", "queue"):  # applied: nothing has this
        assert scenario.ok(f"list-{name}") == 0, name

    first, second = scenario.ok("replay-1"), scenario.ok("replay-2")
    assert first["id"] == second["id"]  # one idempotency key: one run
    run = scenario.ok("replay-completed")["run"]
    assert run["payload"] == {"name": "Replayed", "when": "2026-01-01T00:00:00.000Z"}
    assert run["output"]["message"] == "Hello, Replayed!"
    assert run["tags"] == ["replayed"]
    row = run_row(first["id"])
    assert (row.concurrency_key, row.machine, row.max_duration_seconds, row.locked_version) == (
        "tenant-7", "small-2x", 120, version)
    assert row.payload_type == "application/super+json"
    assert row.idempotency_key_hash is not None
    assert scenario.error("replay-region")["status"] == 400
    assert scenario.error("replay-unknown-version")["status"] == 400


def test_schedules_create_retrieve_list_update_activate_deactivate_del_and_timezones(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any, clean_schedules: None
) -> None:
    from tests.support.schedules import Scheduler, fire

    scenario = run_scenario("schedules.mjs", project.keys["dev"])

    zones = scenario.ok("timezones")
    assert zones["first"] == "UTC"
    assert zones["hasNewYork"]
    assert zones["withoutUtc"] == zones["count"] - 1
    created = scenario.ok("create")
    assert created["id"].startswith("sched_")
    assert (created["type"], created["task"], created["active"]) == ("IMPERATIVE", "test-echo", True)
    assert created["generator"]["expression"] == "0 9 * * *"
    assert created["timezone"] == "America/New_York"
    assert created["externalId"] == "user_1"
    assert created["nextRunIsDate"]
    # 09:00 in New York is 13:00 or 14:00 UTC, whatever the season.
    assert _date(created["nextRun"]).hour in (13, 14)
    assert created["environments"] == [
        {"id": project.environment_ids["dev"], "type": "DEVELOPMENT"}
    ]
    assert scenario.ok("create-again")["id"] == created["id"]
    assert scenario.ok("retrieve")["id"] == created["id"]
    listed = scenario.ok("list")
    assert listed["ids"] == [listed["tickId"], created["id"]]
    assert listed["pagination"] == {"currentPage": 1, "totalPages": 2, "count": 2}
    updated = scenario.ok("update")
    assert (updated["generator"]["expression"], updated["timezone"], updated["externalId"]) == (
        "*/15 * * * *", "Europe/Paris", "user_2"
    )
    deactivated = scenario.ok("deactivate")
    assert deactivated["active"] is False
    assert "nextRun" not in deactivated
    assert scenario.ok("activate")["active"] is True
    assert scenario.ok("del") == {"id": created["id"]}
    assert scenario.error("retrieve-deleted")["status"] == 404
    bad_cron = scenario.error("bad-cron")
    assert bad_cron["status"] == 400
    assert "Invalid cron expression '61 * * * *'" in bad_cron["message"]
    bad_zone = scenario.error("bad-timezone")
    assert bad_zone["status"] == 400
    assert "Mars/Olympus" in bad_zone["message"]
    assert scenario.error("unknown-task")["status"] == 404

    # The remaining schedule ticks (made due, fired by the sweep's domain function): the
    # SDK sees the run's schedule and finds it with runs.list({ schedule }).
    tick_id = listed["tickId"]
    scheduler = Scheduler(project)
    scheduler.make_due(tick_id)
    assert fire(publish=True) == 1
    [(run_id, _, payload)] = scheduler.runs(tick_id)
    runs_seen = run_scenario(
        "schedule_runs.mjs", project.keys["dev"], E2E_SCHEDULE_ID=tick_id, E2E_RUN_ID=run_id
    )
    run = runs_seen.ok("retrieve")
    assert run["schedule"]["id"] == tick_id
    assert run["schedule"]["externalId"] == "ticker"
    assert run["schedule"]["generator"]["expression"] == "*/5 * * * *"
    assert run["payload"] == payload
    assert run["output"]["payload"]["scheduleId"] == tick_id
    assert runs_seen.ok("list-by-schedule")["ids"] == [run_id]


def test_bulk_replay_by_filter_polls_to_completion_and_bulk_calls_work(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("bulk.mjs", project.keys["dev"])

    failed = scenario.ok("trigger-failing")["ids"]
    done = scenario.ok("poll")
    assert done["status"] == "COMPLETED"
    assert done["type"] == "REPLAY"
    assert done["name"] == "replay after the fix"
    assert done["counts"] == {"total": len(failed), "success": len(failed), "failure": 0}
    assert scenario.ok("retrieve")["id"] == done["id"]
    assert scenario.ok("runs-of-bulk-action") == {"count": len(failed)}
    paced = scenario.ok("paced-then-aborted")
    assert paced["status"] == "ABORTED"
    cancel = scenario.ok("bulk-cancel-by-ids")
    assert cancel["done"]["counts"] == {"total": 2, "success": 2, "failure": 0}
    assert cancel["statuses"] == ["CANCELED", "CANCELED"]
    listed = scenario.ok("list")["items"]
    assert len(listed) == 3
    assert listed[0]["type"] == "CANCEL"
    assert all(item["dates"] for item in listed)
    refused = scenario.error("filter-without-fields")
    assert refused["status"] == 400


def test_queues_and_concurrency_limits_through_the_sdk(
    run_scenario: Any, project: ProjectKeys
) -> None:
    scenario = run_scenario("queues.mjs", project.keys["dev"])

    listed = scenario.ok("queues-list")
    assert {"task/test-limited", "task/test-echo", "emails"} <= set(listed["names"])
    assert listed["names"] == sorted(listed["names"])
    count = len(listed["names"])
    assert listed["pagination"] == {"currentPage": 1, "totalPages": -(-count // 2),
                                    "count": count}
    own = scenario.ok("queues-retrieve-task")
    assert own == {
        "id": own["id"], "name": "task/test-limited", "type": "task", "running": 0,
        "queued": 0, "paused": False, "concurrencyLimit": None, "version": "V2",
    }
    assert scenario.ok("queues-retrieve-id") == own
    assert scenario.ok("queues-retrieve-custom")["type"] == "custom"
    assert scenario.ok("queues-pause")["paused"] is True
    assert scenario.ok("queues-resume")["paused"] is False
    for step in ("queues-override", "queues-reset", "queues-override-custom"):
        refused = scenario.error(step)
        assert refused["status"] == 400
        assert "no concurrency limit of its own" in refused["message"]
    assert scenario.error("queues-retrieve-unknown")["status"] == 404

    limits = scenario.ok("limits-list")
    assert {"task/test-limited", "test-shared"} <= set(limits["names"])
    assert limits["pagination"]["totalPages"] == len(limits["names"])
    limit = scenario.ok("limits-retrieve")
    assert limit["id"].startswith("climit_")
    assert (limit["name"], limit["total"]["current"], limit["perKey"]["current"]) == (
        "task/test-limited", 2, 1)
    key = scenario.ok("limits-retrieve-key")
    assert key == {"name": "task/test-limited", "concurrencyKey": "user_1",
                   "perKey": {"current": 1, "base": 1, "override": None, "expiresAt": None},
                   "running": 0, "paused": False}
    widened = scenario.ok("limits-override")
    assert (widened["total"]["current"], widened["total"]["base"], widened["overriddenAt"]) == (
        5, 2, "date")
    capped = scenario.ok("limits-override-key")
    assert (capped["perKey"]["current"], capped["expiresAt"]) == (0, "date")
    assert 3_500_000 < capped["expiresInMs"] < 3_700_000
    assert scenario.ok("limits-override-numeric-key")["concurrencyKey"] == "42"
    assert scenario.ok("limits-reset-key")["perKey"]["override"] is None
    assert scenario.ok("limits-reset")["total"]["override"] is None
    assert scenario.ok("limits-pause")["paused"] is True
    assert scenario.ok("limits-resume")["paused"] is False
    assert scenario.error("limits-override-empty")["status"] == 400
    total_with_key = scenario.error("limits-override-key-total")
    assert total_with_key["status"] == 400
    assert "total" in total_with_key["message"]
    assert scenario.error("limits-retrieve-unknown")["status"] == 404

    by_queue = scenario.ok("runs-by-queue")
    assert by_queue["byTask"] == [by_queue["echo"]]
    assert by_queue["byCustom"] == [by_queue["named"]]
    assert by_queue["both"] == sorted([by_queue["echo"], by_queue["named"]])


def test_a_runs_trace_through_the_official_client_whole_and_paged(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("run_trace.mjs", project.keys["dev"])

    retried_id = scenario.ok("trigger-retried")["id"]
    whole = scenario.ok("trace-retried")
    root = whole["root"]
    assert whole["traceId"] == retried_id
    assert (root["id"], root["message"], root["status"]) == (retried_id, "trace-retried",
                                                             "COMPLETED")
    assert root["startIsDate"] is True
    assert [c["kind"] for c in root["children"]] == [
        "queue", "attempt", "backoff", "attempt", "backoff", "attempt"]
    attempts = [c for c in root["children"] if c["kind"] == "attempt"]
    assert [a["isError"] for a in attempts] == [True, True, False]
    assert all(c["durationMs"] > 0 for c in root["children"] if c["kind"] == "backoff")
    assert root["durationMs"] >= sum(c["durationMs"] for c in root["children"][1:])

    paged = scenario.ok("trace-pages")
    assert paged["pages"] == 4
    assert paged["sizes"] == [2, 2, 2, 1]
    assert [f["attemptNumber"] for f in paged["failures"]] == [1, 2]
    [rebuilt] = paged["roots"]
    assert rebuilt["id"] == retried_id
    assert [c["id"] for c in rebuilt["children"]] == [c["id"] for c in root["children"]]
    assert [c.get("attemptNumber") for c in rebuilt["children"]] == [None, 1, None, 2, None, 3]
    detail = paged["detail"]
    assert (detail["spanId"], detail["parentId"], detail["entityType"]) == (
        f"{retried_id}:attempt:2", retried_id, "attempt")
    assert detail["isError"] is True
    assert detail["startIsDate"] is True
    assert detail["properties"]["error"]["message"] == "trace attempt 2 fails"
    assert detail["durationMs"] > 0

    parent_id = scenario.ok("trigger-parent")["id"]
    parent = scenario.ok("trace-parent")["root"]
    attempt = parent["children"][1]
    assert [c["kind"] for c in attempt["children"]] == ["checkpoint", "child"]
    child = attempt["children"][1]
    assert (child["message"], child["linkedRunId"], child["runId"]) == (
        "trace-child", child["id"], child["id"])
    assert run_row(child["id"]).parent_run_id == parent_id
    span = scenario.ok("span-of-parent-attempt")
    assert [(r["runId"], r["taskIdentifier"]) for r in span["triggeredRuns"]] == [
        (child["id"], "trace-child")]
    assert scenario.error("span-unknown")["status"] == 404

    durable_id = scenario.ok("trigger-durable")["id"]
    durable = scenario.ok("trace-durable")
    root = durable["root"]
    assert [c["kind"] for c in root["children"]] == ["queue", "attempt", "attempt"]
    first, resumed = root["children"][1:]
    assert (first["children"][0]["kind"], first["children"][0]["message"]) == ("step", "Step a")
    [wait] = [c for c in first["children"] if c["kind"] == "wait"]
    assert wait["message"].startswith("Wait until ")
    assert wait["durationMs"] >= 400
    assert wait["parentId"] == f"{durable_id}:attempt:1"
    assert resumed["message"] == "Attempt 2 (resumed after wait)"
    assert [(c["kind"], c["message"]) for c in resumed["children"]] == [("step", "Step b")]
    [rebuilt] = durable["roots"]
    assert [c["id"] for c in rebuilt["children"][1]["children"]] == [
        c["id"] for c in first["children"]]

    assert scenario.ok("token-reads-its-trace") == {"id": retried_id}
    refused = scenario.error("token-reads-no-other-trace")
    assert (refused["status"], refused["className"]) == (404, "NotFoundError")
    assert scenario.error("unknown-run")["status"] == 404
