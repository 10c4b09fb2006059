"""A bulk action on the wire: the SDK's ``BulkActionObject`` (camelCase, ISO dates, absent
fields omitted), plus Reprise's extras that clients may ignore."""

from __future__ import annotations

from typing import Any

from reprise_server.shared.bulk.models import BulkAction
from reprise_server.shared.bulk.service import Preview
from reprise_server.shared.durations import iso

# Trigger.dev's BulkActionType has no reschedule; the SDK's vocabulary never lists one.
SDK_KINDS = ("replay", "cancel")


def bulk_action_to_wire(bulk: BulkAction) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": bulk.id,
        "name": bulk.name,
        "type": bulk.kind.upper(),
        "action": bulk.kind,
        "status": bulk.status,
        "counts": {
            "total": bulk.total_count,
            "success": bulk.success_count,
            "failure": bulk.failure_count,
        },
        "createdAt": iso(bulk.created_at),
        "completedAt": iso(bulk.completed_at),
        "selection": bulk.selection,
        "source": bulk.source,
        **{key: bulk.arguments[key] for key in ("maxPerSecond", "delayedUntil")
           if key in bulk.arguments},
    }
    return {key: value for key, value in data.items() if value is not None}


def preview_to_wire(preview: Preview) -> dict[str, Any]:
    return {"dryRun": True, "count": preview.count, "runIds": preview.run_ids}
