"""Which runs: :class:`RunFilter`, and the SQL that lists, counts and picks the runs a
filter matches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, column, func, or_, select, table
from sqlalchemy.orm import Session

from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus


@dataclass(frozen=True)
class RunFilter:
    statuses: frozenset[RunStatus] | None = None
    task_identifiers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    is_test: bool | None = None
    batch_id: str | None = None
    replayed_from: str | None = None
    schedule_id: str | None = None
    replays_only: bool = False
    run_ids: tuple[str, ...] = ()
    bulk_action_id: str | None = None


# The runs a bulk action produced or changed (its items' results), named without importing
# the bulk package, which sits above this one.
_BULK_ITEMS = table("bulk_action_items", column("bulk_action_id"), column("result_run_id"))


def _apply_filter(query: Any, environment_id: str, f: RunFilter) -> Any:
    query = query.where(Run.environment_id == environment_id)
    if f.statuses is not None:
        query = query.where(Run.status.in_(list(f.statuses)))
    if f.task_identifiers:
        query = query.where(Run.task_identifier.in_(f.task_identifiers))
    if f.tags:
        query = query.where(Run.tags.overlap(list(f.tags)))
    if f.versions:
        query = query.where(Run.version.in_(f.versions))
    if f.created_from is not None:
        query = query.where(Run.created_at >= f.created_from)
    if f.created_to is not None:
        query = query.where(Run.created_at <= f.created_to)
    if f.is_test is not None:
        query = query.where(Run.is_test == f.is_test)
    if f.batch_id is not None:
        query = query.where(Run.batch_id == f.batch_id)
    if f.replayed_from is not None:
        query = query.where(Run.replayed_from == f.replayed_from)
    if f.schedule_id is not None:
        query = query.where(Run.schedule_id == f.schedule_id)
    if f.replays_only:
        query = query.where(Run.replayed_from.is_not(None))
    if f.run_ids:
        query = query.where(Run.id.in_(f.run_ids))
    if f.bulk_action_id is not None:
        query = query.where(Run.id.in_(
            select(_BULK_ITEMS.c.result_run_id).where(
                _BULK_ITEMS.c.bulk_action_id == f.bulk_action_id
            )
        ))
    return query


def list_runs(
    session: Session,
    environment_id: str,
    run_filter: RunFilter,
    limit: int,
    after: tuple[datetime, str] | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[Run]:
    """Newest first, keyset-paginated on ``(created_at, id)``; ``before`` walks backwards."""
    query = _apply_filter(select(Run), environment_id, run_filter)
    if after is not None:
        at, rid = after
        query = query.where(or_(Run.created_at < at, and_(Run.created_at == at, Run.id < rid)))
    if before is not None:
        at, rid = before
        query = query.where(or_(Run.created_at > at, and_(Run.created_at == at, Run.id > rid)))
        rows = list(
            session.scalars(query.order_by(Run.created_at.asc(), Run.id.asc()).limit(limit))
        )
        rows.reverse()
        return rows
    return list(session.scalars(query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)))


def count_runs(session: Session, environment_id: str, run_filter: RunFilter) -> int:
    query = _apply_filter(select(func.count()).select_from(Run), environment_id, run_filter)
    return int(session.execute(query).scalar_one())


def run_ids_matching(
    session: Session, environment_id: str, run_filter: RunFilter, limit: int
) -> list[str]:
    query = _apply_filter(select(Run.id), environment_id, run_filter)
    return list(session.scalars(query.order_by(Run.created_at.desc()).limit(limit)))
