"""Bulk actions (Trigger.dev's ``runs.bulk.*``): accept, preview, read, abort.

Accepting freezes the selection, counts it, records the action and its first batch's
command in the request's transaction, and publishes that command after commit; the control
process works through the runs in batches (:mod:`shared.bulk.batches`). The flow and the
additions (``dryRun``, ``maxPerSecond``, ``reschedule``): docs/architecture.md#bulk-actions
and docs/api.md#bulk-actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared.bulk import repository as repo
from reprise_server.shared.bulk.batches import enqueue_batch
from reprise_server.shared.bulk.models import BulkAction, BulkKind, BulkStatus
from reprise_server.shared.bulk.schemas import BulkActionRequest
from reprise_server.shared.bulk.selection import selection_of
from reprise_server.shared.commands.errors import InvalidDelay
from reprise_server.shared.commands.reschedule import resolve_new_time
from reprise_server.shared.db import db_now
from reprise_server.shared.durations import iso
from reprise_server.shared.errors import BadRequest, Conflict, InvalidInput, NotFound
from reprise_server.shared.ids import new_id
from reprise_server.shared.payloads import reject_nul
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import filters
from reprise_server.shared.runs.filters import RunFilter
from reprise_server.shared.runs.listing import PageRequest
from reprise_server.shared.runs.states import RunStatus

PREVIEW_IDS = 10


class BulkActionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Bulk action not found")


@dataclass(frozen=True)
class BulkSpec:
    """A bulk action to create, typed: the adapters (REST, dashboard) build it."""

    kind: BulkKind
    run_filter: RunFilter
    name: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    source: str = "api"


@dataclass(frozen=True)
class Preview:
    count: int
    run_ids: list[str]


@dataclass(frozen=True)
class BulkPage:
    actions: list[BulkAction]
    next_cursor: str | None
    previous_cursor: str | None


def spec_of(session: Session, body: BulkActionRequest, api_version: str | None,
            *, source: str = "api") -> BulkSpec:
    """The request as a typed action, its filter frozen at the database's now."""
    reject_nul(body.model_dump(by_alias=True, exclude_none=True), "body")
    now = db_now(session)
    if body.run_ids is not None:
        run_filter = RunFilter(run_ids=tuple(body.run_ids))
    else:
        assert body.filter is not None
        run_filter = body.filter.to_run_filter(api_version, now)
    kind = BulkKind(body.action)
    arguments: dict[str, Any] = {}
    if body.max_per_second is not None:
        arguments["maxPerSecond"] = body.max_per_second
    if kind is BulkKind.RESCHEDULE:
        assert body.delay is not None
        arguments["delay"] = body.delay
        try:
            arguments["delayedUntil"] = iso(resolve_new_time(body.delay, now))
        except OverflowError:
            raise InvalidDelay(body.delay) from None
    return BulkSpec(kind, _scoped(kind, run_filter), body.name, arguments, source)


def _scoped(kind: BulkKind, run_filter: RunFilter) -> RunFilter:
    """A reschedule acts on DELAYED runs only."""
    if kind is not BulkKind.RESCHEDULE:
        return run_filter
    if run_filter.statuses is not None and RunStatus.DELAYED not in run_filter.statuses:
        raise BadRequest("A bulk reschedule acts on DELAYED runs only; filter.status names none")
    return replace(run_filter, statuses=frozenset({RunStatus.DELAYED}))


def preview(session: Session, auth: AuthContext, spec: BulkSpec) -> Preview:
    """How many runs the action would touch, and the first few (newest first)."""
    count = filters.count_runs(session, auth.environment_id, spec.run_filter)
    ids = filters.run_ids_matching(session, auth.environment_id, spec.run_filter, PREVIEW_IDS)
    return Preview(count, ids)


def create_bulk_action(session: Session, auth: AuthContext, spec: BulkSpec) -> BulkAction:
    total = filters.count_runs(session, auth.environment_id, spec.run_filter)
    bulk = repo.insert_bulk_action(session, BulkAction(
        id=new_id("bulk"),
        environment_id=auth.environment_id,
        kind=spec.kind.value,
        name=spec.name,
        status=BulkStatus.PENDING.value if total else BulkStatus.COMPLETED.value,
        selection=selection_of(spec.run_filter),
        arguments=spec.arguments,
        source=spec.source,
        total_count=total,
        success_count=0,
        failure_count=0,
        batch_count=0,
        completed_at=None if total else db_now(session),
    ))
    if total:
        enqueue_batch(session, bulk, 0)
    return bulk


def get_bulk_action(session: Session, auth: AuthContext, bulk_id: str) -> BulkAction:
    bulk = repo.get_bulk_action(session, auth.environment_id, bulk_id)
    if bulk is None:
        raise BulkActionNotFound()
    return bulk


def abort_bulk_action(session: Session, auth: AuthContext, bulk_id: str) -> BulkAction:
    """Stop a pending action before its next batch (a batch in progress finishes first);
    409 for an action already completed or aborted, as Trigger.dev answers."""
    bulk = get_bulk_action(session, auth, bulk_id)
    if not repo.abort_bulk_action(session, bulk.id):
        session.refresh(bulk)
        raise Conflict(f"Bulk action already {bulk.status.lower()}: {bulk.id}")
    session.refresh(bulk)
    return bulk


def _position(session: Session, auth: AuthContext, cursor: str | None
              ) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    bulk = repo.get_bulk_action(session, auth.environment_id, cursor)
    if bulk is None:
        raise InvalidInput("page cursor names no bulk action")
    return bulk.created_at, bulk.id


def list_bulk_actions(session: Session, auth: AuthContext, page: PageRequest,
                      kinds: tuple[str, ...] | None = None) -> BulkPage:
    """Newest first, keyset cursors (the ids of the page's last and first actions)."""
    after = _position(session, auth, page.after)
    before = _position(session, auth, page.before)
    rows = repo.list_bulk_actions(session, auth.environment_id, page.size + 1, kinds=kinds,
                                  after=after, before=before)
    has_more = len(rows) > page.size
    if before is not None:
        rows = rows[-page.size:] if has_more else rows
        return BulkPage(rows, rows[-1].id if rows else None,
                        rows[0].id if has_more and rows else None)
    rows = rows[:page.size]
    return BulkPage(rows, rows[-1].id if has_more and rows else None,
                    rows[0].id if after is not None and rows else None)
