"""A bulk action's selection: the run filter frozen at its creation, stored as JSON."""

from __future__ import annotations

from typing import Any

from reprise_server.shared.durations import parse_datetime
from reprise_server.shared.runs.filters import RunFilter
from reprise_server.shared.runs.states import RunStatus


def selection_of(run_filter: RunFilter) -> dict[str, Any]:
    """The filter as JSON (absent fields omitted)."""
    data: dict[str, Any] = {
        # An empty list is kept: a status filter naming no state Reprise has matches no run.
        "statuses": (
            sorted(s.value for s in run_filter.statuses)
            if run_filter.statuses is not None else None
        ),
        "taskIdentifiers": list(run_filter.task_identifiers) or None,
        "tags": list(run_filter.tags) or None,
        "versions": list(run_filter.versions) or None,
        # Full precision: the frozen bound must not drop a run created a moment before.
        "createdFrom": run_filter.created_from.isoformat() if run_filter.created_from else None,
        "createdTo": run_filter.created_to.isoformat() if run_filter.created_to else None,
        "isTest": run_filter.is_test,
        "batchId": run_filter.batch_id,
        "bulkActionId": run_filter.bulk_action_id,
        "replaysOnly": run_filter.replays_only or None,
        "notReplayed": run_filter.not_replayed or None,
        "runIds": list(run_filter.run_ids) or None,
        "errorFingerprint": run_filter.error_fingerprint,
    }
    return {key: value for key, value in data.items() if value is not None}


def filter_of(selection: dict[str, Any]) -> RunFilter:
    def moment(key: str) -> Any:
        value = selection.get(key)
        return parse_datetime(value) if value else None

    statuses = selection.get("statuses")
    return RunFilter(
        statuses=frozenset(RunStatus(s) for s in statuses) if statuses is not None else None,
        task_identifiers=tuple(selection.get("taskIdentifiers") or ()),
        tags=tuple(selection.get("tags") or ()),
        versions=tuple(selection.get("versions") or ()),
        created_from=moment("createdFrom"),
        created_to=moment("createdTo"),
        is_test=selection.get("isTest"),
        batch_id=selection.get("batchId"),
        bulk_action_id=selection.get("bulkActionId"),
        replays_only=bool(selection.get("replaysOnly")),
        not_replayed=bool(selection.get("notReplayed")),
        run_ids=tuple(selection.get("runIds") or ()),
        error_fingerprint=selection.get("errorFingerprint"),
    )
