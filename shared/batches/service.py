"""Batch rules: create a batch, fill it from the item stream, read it back — the two
phases of the official SDK's ``batch.trigger`` / ``tasks.batchTrigger``. Each item is
triggered as a single trigger is (:func:`shared.runs.service.trigger_run`); items are
idempotent by their index and the stream is one transaction. Why:
docs/architecture.md#batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared import idempotency
from reprise_server.shared.batches import repository as repo
from reprise_server.shared.batches.models import Batch, BatchItem
from reprise_server.shared.batches.schemas import BatchItemLine, CreateBatchRequest
from reprise_server.shared.db import after_commit_scope, db_now
from reprise_server.shared.errors import BadRequest, Forbidden, NotFound, RepriseError
from reprise_server.shared.idempotency import Finder
from reprise_server.shared.ids import new_id
from reprise_server.shared.projects.service import AuthContext, spend_public_token
from reprise_server.shared.runs.service import trigger_run
from reprise_server.shared.runs.states import RunStatus


class BatchNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Batch not found")


@dataclass(frozen=True)
class CreatedBatch:
    batch: Batch
    is_cached: bool


@dataclass(frozen=True)
class StreamedItems:
    """``StreamBatchItemsResponse``: what this stream added and whether the batch is full."""

    batch_id: str
    accepted: int
    deduplicated: int
    sealed: bool
    enqueued: int
    expected: int


@dataclass(frozen=True)
class BatchView:
    batch: Batch
    items: list[tuple[BatchItem, RunStatus | None]]


def _check_public_tasks(auth: AuthContext, task_ids: list[str]) -> None:
    for task_id in task_ids:
        if not auth.may("batchTrigger", "tasks", task_id):
            raise Forbidden(f"this public access token may not batchTrigger task {task_id!r}")


def create_batch(
    session: Session, auth: AuthContext, request: CreateBatchRequest, request_key: str | None
) -> CreatedBatch:
    """A new batch expecting ``runCount`` items, or the batch its idempotency key (or the
    SDK's request key, on a retry) already names (``isCached``)."""
    if request.resume_parent_on_completion or request.parent_run_id:
        raise BadRequest(
            "parentRunId and resumeParentOnCompletion (batchTriggerAndWait) are not supported:"
            " Reprise tasks do not wait for child runs"
        )
    if auth.is_public:  # a public token names the tasks it may batch-trigger, up front
        if not request.task_identifiers:
            raise Forbidden("a public access token must declare the batch's taskIdentifiers")
        _check_public_tasks(auth, request.task_identifiers)
        if auth.access is not None:  # createBatchTriggerPublicToken: one batch per token
            spend_public_token(session, auth.access)
    request_key = idempotency.request_key(request_key)
    key_hash = idempotency.hash_key(request.idempotency_key) if request.idempotency_key else None
    now = db_now(session)
    batch = Batch(
        id=new_id("batch"),
        project_id=auth.project_id,
        environment_id=auth.environment_id,
        run_count=request.run_count,
        task_identifiers=sorted(set(request.task_identifiers or [])) or None,
        idempotency_key=request.user_idempotency_key,
        idempotency_key_hash=key_hash,
        request_idempotency_key=request_key,
        created_at=now,
        updated_at=now,
    )
    answer = idempotency.insert_or_winner(
        lambda: repo.insert_batch(session, batch),
        _earlier_batches(session, auth.environment_id, request_key, key_hash, now),
    )
    return CreatedBatch(answer.row, answer.cached)


def _earlier_batches(
    session: Session, environment_id: str, request_key: str | None, key_hash: str | None,
    now: datetime,
) -> list[Finder[Batch]]:
    """Where an earlier request's batch is found: by the request key (a retry within the
    window), then by the idempotency key."""
    finders: list[Finder[Batch]] = []
    if request_key:
        finders.append(lambda: idempotency.retry_of(
            repo.find_by_request_key(session, environment_id, request_key), lambda: now,
            lambda batch: repo.release_request_key(session, batch.id)))
    if key_hash:
        finders.append(lambda: idempotency.holder(
            repo.find_by_idempotency_key(session, environment_id, key_hash)))
    return finders


def _trigger_item(
    session: Session, auth: AuthContext, batch: Batch, item: BatchItemLine
) -> dict[str, Any]:
    """The item's row: its run, or the error that kept it from having one (its writes and
    messages undone with it)."""
    row: dict[str, Any] = {
        "batch_id": batch.id, "index": item.index, "task_identifier": item.task,
        "run_id": None, "error": None, "error_code": None,
    }
    try:
        with session.begin_nested(), after_commit_scope(session):
            result = trigger_run(
                session, auth, item.task, item.payload, item.options, batch_id=batch.id
            )
    except RepriseError as exc:
        return {**row, "error": exc.message, "error_code": type(exc).__name__}
    return {**row, "run_id": result.run.id}


def stream_items(
    session: Session, auth: AuthContext, batch_id: str, items: list[BatchItemLine]
) -> StreamedItems:
    """Add the items this stream carries to the batch; those it has already are counted
    as deduplicated. 400 for an index the batch does not expect (nothing is written)."""
    batch = repo.get_batch(session, auth.environment_id, batch_id, lock=True)
    if batch is None:
        raise BatchNotFound()
    if auth.is_public:
        tasks = sorted({item.task for item in items})
        _check_public_tasks(auth, tasks)
        # A public token's batch declared its tasks when it was created (checked against
        # the token then): its items stay within them.
        undeclared = [task for task in tasks if task not in (batch.task_identifiers or [])]
        if undeclared:
            raise Forbidden(
                f"task {undeclared[0]!r} is not one of this batch's taskIdentifiers "
                f"{batch.task_identifiers}"
            )
    for item in items:
        if item.index >= batch.run_count:
            raise BadRequest(
                f"item index {item.index} is out of range: the batch expects"
                f" {batch.run_count} items (0 to {batch.run_count - 1})"
            )
    present = repo.item_indexes(session, batch.id)
    rows, deduplicated = [], 0
    for item in items:
        if item.index in present:
            deduplicated += 1
            continue
        present.add(item.index)
        rows.append(_trigger_item(session, auth, batch, item))
    repo.insert_items(session, rows)
    sealed = len(present) == batch.run_count
    if sealed:
        repo.seal(session, batch.id)
    return StreamedItems(
        batch.id, len(rows), deduplicated, sealed, len(present), batch.run_count
    )


def read_batch(session: Session, auth: AuthContext, batch_id: str) -> BatchView:
    """A batch of the caller's environment (a public token: one its scopes name)."""
    batch = repo.get_batch(session, auth.environment_id, batch_id)
    if batch is None or not auth.may("read", "batch", batch.id):
        raise BatchNotFound()
    return BatchView(batch, repo.items_with_runs(session, batch.id))


def visible_batch(session: Session, auth: AuthContext, batch_id: str) -> Batch:
    """The batch (for a realtime subscription), as :func:`read_batch` authorizes it."""
    batch = repo.get_batch(session, auth.environment_id, batch_id)
    if batch is None or not auth.may("read", "batch", batch.id):
        raise BatchNotFound()
    return batch
