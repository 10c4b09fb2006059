"""Run edits the SDK makes besides status changes: metadata (get and flush), tags, the
result of a finished run, and resetting an idempotency key.

Trigger.dev's webapp is the reference where the SDK is silent (422 for the metadata of a
run finished over an hour ago and for more than 10 tags, 413 over
``shared.runs.metadata.MAX_METADATA_BYTES``). See
docs/api.md#packets-run-endpoints-and-options.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared.db import db_now
from reprise_server.shared.errors import NotFound, RunNotFound, Unprocessable
from reprise_server.shared.idempotency import hash_key
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import edits_repository as repo
from reprise_server.shared.runs.metadata import apply_operations, check_metadata_size
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.schemas import MAX_TAGS, UpdateMetadataRequest
from reprise_server.shared.runs.service import get_run_for
from reprise_server.shared.runs.states import FINAL_STATES, RunStatus

# A finished run's metadata may still change this long after it finished, as Trigger.dev's
# UpdateMetadataService allows (a task's last flush can arrive after its run ended).
METADATA_WINDOW_SECONDS = 3600


def _updatable(session: Session, run: Run) -> bool:
    if run.finished_at is None:
        return True
    return bool(run.finished_at > db_now(session) - timedelta(seconds=METADATA_WINDOW_SECONDS))


def _dump(operations: list[Any] | None) -> list[dict[str, Any]]:
    return [op.model_dump() for op in operations or []]


def _write(session: Session, run: Run, metadata: dict[str, Any]) -> dict[str, Any]:
    check_metadata_size(metadata)
    repo.set_metadata(session, run.id, metadata)
    return metadata


def update_metadata(
    session: Session, auth: AuthContext, run_id: str, body: UpdateMetadataRequest
) -> dict[str, Any]:
    """Apply a flush: ``metadata`` replaces, then ``operations`` change; returns the run's
    new metadata. The row is locked, so concurrent flushes apply one after the other."""
    get_run_for(session, auth, run_id)  # 400/404 as every run route
    run = repo.lock_run_in(session, auth.environment_id, run_id)
    if run is None:
        raise RunNotFound()
    if run.status in FINAL_STATES and not _updatable(session, run):
        raise Unprocessable(
            "Cannot update metadata for a completed run: it finished more than "
            f"{METADATA_WINDOW_SECONDS // 3600} hour ago"
        )
    current = body.metadata if body.metadata is not None else run.metadata_
    metadata = _write(session, run, apply_operations(current, _dump(body.operations)))
    for target_id, operations in ((run.parent_run_id, body.parent_operations),
                                  (run.root_run_id, body.root_operations)):
        if not operations:
            continue
        target = repo.lock_run_in(session, auth.environment_id, target_id or run.id)
        if target is None:
            continue  # the parent was deleted with its environment: nothing to change
        base = metadata if target.id == run.id else target.metadata_
        changed = _write(session, target, apply_operations(base, _dump(operations)))
        if target.id == run.id:
            metadata = changed
    return metadata


def get_metadata(session: Session, auth: AuthContext, run_id: str) -> dict[str, Any]:
    return dict(get_run_for(session, auth, run_id).metadata_ or {})


def add_tags(session: Session, auth: AuthContext, run_id: str, tags: list[str]) -> str:
    """Add tags to a run; the sentence Trigger.dev answers with."""
    get_run_for(session, auth, run_id)
    run = repo.lock_run_in(session, auth.environment_id, run_id)
    if run is None:
        raise RunNotFound()
    existing = list(run.tags or [])
    new = [tag for tag in dict.fromkeys(tags) if tag not in existing]
    if not new:
        return "No new tags to add"
    if len(existing) + len(new) > MAX_TAGS:
        refused = ", ".join(f"'{tag}'" for tag in new)
        raise Unprocessable(
            f"Runs can only have {MAX_TAGS} tags, you're trying to set "
            f"{len(existing) + len(new)}. These tags have not been set: {refused}."
        )
    repo.set_tags(session, run.id, sorted([*existing, *new]))
    return f"Successfully set {len(new)} new tags."


def reset_idempotency_key(
    session: Session, auth: AuthContext, key: str, task_identifier: str
) -> str:
    released = repo.release_idempotency_keys(
        session, auth.environment_id, task_identifier, hash_key(key)
    )
    if not released:
        raise NotFound(f"No run of {task_identifier} holds the idempotency key {key}")
    return key


def _task_error(run: Run) -> dict[str, Any]:
    """The run's error as the SDK's ``TaskRunError``."""
    if run.status is RunStatus.CANCELED:
        return {"type": "INTERNAL_ERROR", "code": "TASK_RUN_CANCELLED"}
    if run.status is RunStatus.TIMED_OUT:
        return {"type": "INTERNAL_ERROR", "code": "MAX_DURATION_EXCEEDED",
                "message": (run.error or {}).get("message", "maxDuration exceeded")}
    error = run.error or {}
    built_in = {"type": "BUILT_IN_ERROR", "name": str(error.get("name") or "Error"),
                "message": str(error.get("message") or run.status.value)}
    built_in["stackTrace"] = str(error.get("stackTrace") or "")
    return built_in


def run_result(session: Session, auth: AuthContext, run_id: str) -> dict[str, Any]:
    """The SDK's ``TaskRunExecutionResult`` of a finished run."""
    run = get_run_for(session, auth, run_id)
    if run.status not in FINAL_STATES:
        raise NotFound("Run either doesn't exist or is not finished")
    base = {"id": run.id, "taskIdentifier": run.task_identifier,
            "usage": {"durationMs": run.duration_ms}}
    if run.status is RunStatus.COMPLETED:
        result: dict[str, Any] = {**base, "ok": True, "outputType": "application/json"}
        if run.output is not None:
            result["output"] = json.dumps(run.output)
        return result
    return {**base, "ok": False, "error": _task_error(run)}
