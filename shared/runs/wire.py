"""The run as the API shows it: camelCase, ISO dates with ``Z``, absent fields omitted.

Never emit ``null`` for an optional field: the official SDK validates with zod and
rejects it. ``_compact`` drops every None.
"""

from __future__ import annotations

from typing import Any

from reprise_server.shared.durations import format_duration, iso
from reprise_server.shared.runs.models import Attempt, Run
from reprise_server.shared.runs.states import (
    EXECUTING_LIKE,
    FAILED_LIKE,
    FINAL_STATES,
    QUEUED_LIKE,
    RunStatus,
    public_status,
)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def attempt_to_wire(attempt: Attempt) -> dict[str, Any]:
    return _compact(
        {
            "id": attempt.id,
            "status": attempt.status,
            "error": _compact(attempt.error) if attempt.error else None,
            "createdAt": iso(attempt.created_at),
            "updatedAt": iso(attempt.updated_at),
            "startedAt": iso(attempt.started_at),
            "completedAt": iso(attempt.completed_at),
        }
    )


def common_run_to_wire(run: Run, api_version: str | None) -> dict[str, Any]:
    """The fields shared by the run object, list items and related runs."""
    return _compact(
        {
            "id": run.id,
            "status": public_status(run.status, api_version),
            "taskIdentifier": run.task_identifier,
            "version": run.version,
            "idempotencyKey": run.idempotency_key,
            "createdAt": iso(run.created_at),
            "updatedAt": iso(run.updated_at),
            "isTest": run.is_test,
            "startedAt": iso(run.started_at),
            "finishedAt": iso(run.finished_at),
            "delayedUntil": iso(run.delayed_until),
            "ttl": format_duration(run.ttl_seconds) if run.ttl_seconds else None,
            "expiredAt": iso(run.expired_at),
            "tags": sorted(run.tags or []),
            "metadata": run.metadata_,
            "costInCents": run.cost_in_cents,
            "baseCostInCents": run.base_cost_in_cents,
            "durationMs": run.duration_ms,
            "depth": run.depth,
            "batchId": run.batch_id,
            "triggerFunction": run.trigger_function,
            "isQueued": run.status in QUEUED_LIKE,
            "isExecuting": run.status in EXECUTING_LIKE,
            "isWaiting": run.status is RunStatus.WAITING,
            "isCompleted": run.status in FINAL_STATES,
            "isSuccess": run.status is RunStatus.COMPLETED,
            "isFailed": run.status in FAILED_LIKE,
            "isCancelled": run.status is RunStatus.CANCELED,
            "replayedFrom": run.replayed_from,
            "lineageDepth": run.lineage_depth,
            # A replay that did not start from the top: {"step", "position"} or
            # {"checkpoint"}.
            "resumedFrom": run.resumed_from,
        }
    )


def run_to_wire(
    run: Run,
    attempts: list[Attempt],
    related: dict[str, Any],
    api_version: str | None,
    *,
    public: bool = False,
    payload_url: str | None = None,
    output_url: str | None = None,
    schedule: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The full run object of ``GET /api/v3/runs/{id}``.

    ``payload_url``/``output_url`` replace the inline value when it is too large; a public
    access token never sees payload or output.
    """
    data = common_run_to_wire(run, api_version)
    if not public:
        if payload_url:
            data["payloadPresignedUrl"] = payload_url
        elif run.payload is not None:
            data["payload"] = run.payload
        if output_url:
            data["outputPresignedUrl"] = output_url
        elif run.output is not None:
            data["output"] = run.output
    if run.error:
        data["error"] = _compact(
            {
                "message": run.error.get("message", ""),
                "name": run.error.get("name"),
                "stackTrace": run.error.get("stackTrace"),
            }
        )
    rel: dict[str, Any] = {}
    if related.get("root") is not None:
        rel["root"] = common_run_to_wire(related["root"], api_version)
    if related.get("parent") is not None:
        rel["parent"] = common_run_to_wire(related["parent"], api_version)
    if related.get("children"):
        rel["children"] = [common_run_to_wire(c, api_version) for c in related["children"]]
    if schedule is not None:
        data["schedule"] = schedule
    data["relatedRuns"] = rel
    data["attempts"] = [attempt_to_wire(a) for a in attempts]
    data["attemptCount"] = len(attempts)
    if run.execution_trace:
        data["executionTrace"] = run.execution_trace
    return data
