"""The run in Strait's snake_case ``JobRun`` shape, for the ``/v1`` routes.

Strait's model is not Reprise's: what Reprise lacks is omitted, and each field's mapping
(``job_version`` as the version's position in its environment, ``attempt`` starting at 1,
``triggered_by`` in Strait's words, ``key:value`` tags as an object, ``execution_trace``
from the run's timestamps) is listed in docs/api.md#strait.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reprise_server.shared.durations import iso
from reprise_server.shared.runs.models import Checkpoint, Run

# Reprise's triggered_by -> Strait's (domain.Trigger* in strait-dev/strait).
STRAIT_TRIGGERED_BY = {"api": "manual", "replay": "manual", "task": "spawn"}


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, int((end - start).total_seconds() * 1000))


def execution_trace(run: Run) -> dict[str, int]:
    trace = {
        "queue_wait_ms": _ms(run.queued_at, run.dequeued_at),
        "dequeue_ms": _ms(run.dequeued_at, run.started_at),
        "total_ms": _ms(run.created_at, run.finished_at),
    }
    derived = {k: v for k, v in trace.items() if v is not None}
    stored = {k: v for k, v in (run.execution_trace or {}).items() if isinstance(v, int)}
    return {**derived, **stored}


def tags_object(tags: list[str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for tag in sorted(tags or []):
        key, sep, value = tag.partition(":")
        result[key if sep else tag] = value if sep else ""
    return result


_STORED = object()


def job_run_to_wire(run: Run, job_version: int, payload: Any = _STORED) -> dict[str, Any]:
    """``payload``: the run's payload as its task receives it (an offloaded one resolved);
    by default the stored one."""
    error = run.error or {}
    data: dict[str, Any] = {
        "id": run.id,
        "job_id": run.task_identifier,
        "job_version": job_version,
        "project_id": run.project_id,
        "status": run.status.lower(),
        "attempt": max(1, run.attempt_count),
        "priority": run.priority,
        "triggered_by": STRAIT_TRIGGERED_BY.get(run.triggered_by, run.triggered_by),
        "created_at": iso(run.created_at),
        "lineage_depth": run.lineage_depth,
        "debug_mode": run.debug_mode,
        "payload": run.payload if payload is _STORED else payload,
        "result": run.output,
        "error": error.get("message"),
        "error_class": error.get("name"),
        "metadata": run.metadata_,
        "tags": tags_object(run.tags),
        "scheduled_at": iso(run.delayed_until),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "expires_at": iso(run.ttl_expires_at),
        "heartbeat_at": iso(run.heartbeat_at),
        "next_retry_at": iso(run.next_attempt_at),
        "continuation_of": run.replayed_from,
        "parent_run_id": run.parent_run_id,
        "batch_id": run.batch_id,
        "concurrency_key": run.concurrency_key,
        "idempotency_key": run.idempotency_key,
        "max_attempts_override": run.max_attempts,
        "timeout_secs_override": run.max_duration_seconds,
        "execution_trace": execution_trace(run),
    }
    return {k: v for k, v in data.items() if v is not None}


def checkpoint_to_wire(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "run_id": checkpoint.run_id,
        "number": checkpoint.number,
        "attempt": checkpoint.attempt_number,
        "state": checkpoint.state,
        "created_at": iso(checkpoint.created_at),
    }
