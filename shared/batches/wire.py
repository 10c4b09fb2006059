"""A batch as ``GET /api/v2/batches/{id}`` shows it (``RetrieveBatchV2Response``), absent
fields omitted; ``items`` (each item's run and its status) and the run counts are
Reprise's additions, which the SDK passes through."""

from __future__ import annotations

from typing import Any

from reprise_server.shared.batches.service import BatchView
from reprise_server.shared.durations import iso
from reprise_server.shared.runs.states import FAILED_LIKE, RunStatus, public_status


def batch_status(view: BatchView) -> str:
    """PENDING until every expected item arrived; then COMPLETED (every item has its
    run), or PARTIAL_FAILED (some items could not create one), as in Trigger.dev: the
    status is about turning items into runs, the runs' own progress is in ``items``."""
    if view.batch.sealed_at is None:
        return "PENDING"
    return "PARTIAL_FAILED" if any(item.error for item, _ in view.items) else "COMPLETED"


def batch_to_wire(view: BatchView, api_version: str | None) -> dict[str, Any]:
    batch = view.batch
    errors = [
        {k: v for k, v in {
            "index": item.index, "taskIdentifier": item.task_identifier,
            "error": item.error, "errorCode": item.error_code,
        }.items() if v is not None}
        for item, _ in view.items if item.error
    ]
    items = [
        {k: v for k, v in {
            "index": item.index, "taskIdentifier": item.task_identifier, "runId": item.run_id,
            "status": public_status(status, api_version) if status else None,
            "error": item.error,
        }.items() if v is not None}
        for item, status in view.items
    ]
    statuses = [status for _, status in view.items if status is not None]
    processing: dict[str, Any] = {"errors": errors}
    if batch.sealed_at is not None:
        processing["completedAt"] = iso(batch.sealed_at)
    data: dict[str, Any] = {
        "id": batch.id,
        "status": batch_status(view),
        "createdAt": iso(batch.created_at),
        "updatedAt": iso(batch.updated_at),
        "runCount": batch.run_count,
        "runs": [item.run_id for item, _ in view.items if item.run_id],
        "processing": processing,
        "successfulRunCount": sum(s is RunStatus.COMPLETED for s in statuses),
        "failedRunCount": sum(s in FAILED_LIKE for s in statuses),
        "items": items,
    }
    if batch.idempotency_key:
        data["idempotencyKey"] = batch.idempotency_key
    return data
