"""Mapping a run to Strait's JobRun shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.strait_wire import execution_trace, job_run_to_wire, tags_object

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _run(**fields: object) -> Run:
    base: dict[str, object] = {
        "id": "run_abc", "project_id": "p1", "environment_id": "e1", "task_identifier": "t",
        "status": "TIMED_OUT", "attempt_count": 2, "priority": 0, "triggered_by": "api",
        "created_at": T0, "lineage_depth": 0, "debug_mode": False, "tags": [],
    }
    base.update(fields)
    return Run(**base)


def test_tags_become_an_object() -> None:
    assert tags_object(["user:42", "vip", "a:b:c"]) == {"a": "b:c", "user": "42", "vip": ""}


def test_execution_trace_is_derived_from_timestamps_and_overlaid() -> None:
    run = _run(
        queued_at=T0, dequeued_at=T0 + timedelta(milliseconds=40),
        started_at=T0 + timedelta(milliseconds=50), finished_at=T0 + timedelta(seconds=1),
        execution_trace={"dispatch_ms": 3},
    )
    assert execution_trace(run) == {
        "queue_wait_ms": 40, "dequeue_ms": 10, "total_ms": 1000, "dispatch_ms": 3,
    }


def test_job_run_omits_what_the_run_lacks() -> None:
    wire = job_run_to_wire(_run(error={"message": "boom", "name": "TimeoutError"}), 3)
    assert wire["status"] == "timed_out"
    assert wire["job_version"] == 3
    assert (wire["error"], wire["error_class"]) == ("boom", "TimeoutError")
    assert None not in wire.values()
    assert "started_at" not in wire
    assert "payload" not in wire
