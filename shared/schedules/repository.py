"""All SQL for schedules.

The due-schedule queries walk ``ix_schedules_due`` (active schedules by ``next_tick_at``)
as an index range scan from its start up to ``now()``: with nothing due the scan stops at
its first entry, so an idle sweep costs one probe whatever the number of schedules.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from reprise_server.shared.schedules.models import Schedule, ScheduleType

_SCHEDULES = cast(Table, Schedule.__table__)

# Built once: this is all an idle sweep runs, every few seconds.
_ANY_DUE = (
    select(_SCHEDULES.c.id)
    .where(_SCHEDULES.c.active, _SCHEDULES.c.next_tick_at <= func.now())
    .order_by(_SCHEDULES.c.next_tick_at)  # the index's order: never a bet on another index
    .limit(1)
)


def any_due(session: Session) -> bool:
    """Whether an active schedule's next tick has come (one probe of ``ix_schedules_due``)."""
    return session.connection().execute(_ANY_DUE).first() is not None


def claim_due(session: Session, batch_size: int) -> list[Schedule]:
    """Up to ``batch_size`` due active schedules, earliest tick first, locked until the end
    of the transaction; rows another sweep holds are skipped (it fires them)."""
    return list(
        session.scalars(
            select(Schedule)
            .where(Schedule.active, Schedule.next_tick_at <= func.now())
            .order_by(Schedule.next_tick_at)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
    )


def record_tick(
    session: Session, schedule_id: str, fired_at: datetime, next_tick_at: datetime | None
) -> None:
    session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id)
        .values(last_tick_at=fired_at, next_tick_at=next_tick_at, updated_at=func.now())
    )


def insert_schedule(session: Session, values: dict[str, Any]) -> str | None:
    """Insert a schedule; None if its deduplication key is already taken in its environment
    (a concurrent create won: the caller reads that one instead)."""
    row = session.execute(
        pg_insert(_SCHEDULES)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_schedules_env_type_key")
        .returning(_SCHEDULES.c.id)
    ).first()
    return None if row is None else str(row[0])


def update_schedule(session: Session, schedule_id: str, **values: Any) -> None:
    session.execute(
        update(Schedule).where(Schedule.id == schedule_id).values(**values, updated_at=func.now())
    )
    session.expire_all()


def get_schedule(
    session: Session, environment_id: str | None, schedule_id: str, *, lock: bool = False
) -> Schedule | None:
    query = select(Schedule).where(Schedule.id == schedule_id)
    if environment_id is not None:
        query = query.where(Schedule.environment_id == environment_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def find_by_key(
    session: Session, environment_id: str, kind: ScheduleType, key: str, *, lock: bool = False
) -> Schedule | None:
    query = select(Schedule).where(
        Schedule.environment_id == environment_id,
        Schedule.type == kind,
        Schedule.deduplication_key == key,
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def declarative_of(session: Session, environment_id: str) -> list[Schedule]:
    """The environment's declarative schedules, locked (a registration rewrites them)."""
    return list(
        session.scalars(
            select(Schedule)
            .where(
                Schedule.environment_id == environment_id,
                Schedule.type == ScheduleType.DECLARATIVE,
            )
            .with_for_update()
        )
    )


def list_schedules(
    session: Session, environment_id: str, offset: int, limit: int
) -> tuple[list[Schedule], int]:
    """A page of the environment's schedules, newest first, and how many it has in all."""
    rows = list(
        session.scalars(
            select(Schedule)
            .where(Schedule.environment_id == environment_id)
            .order_by(Schedule.created_at.desc(), Schedule.id.desc())
            .offset(offset)
            .limit(limit)
        )
    )
    total = session.execute(
        select(func.count()).where(Schedule.environment_id == environment_id)
    ).scalar_one()
    return rows, int(total)


def delete_schedule(session: Session, schedule_id: str) -> None:
    session.execute(delete(Schedule).where(Schedule.id == schedule_id))


def schedules_by_id(session: Session, schedule_ids: Collection[str]) -> dict[str, Schedule]:
    if not schedule_ids:
        return {}
    rows = session.scalars(select(Schedule).where(Schedule.id.in_(list(schedule_ids))))
    return {row.id: row for row in rows}
