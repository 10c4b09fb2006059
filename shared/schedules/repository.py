"""All SQL for schedules.

The due-schedule queries walk ``ix_schedules_due`` (active schedules by ``next_tick_at``)
as an index range scan from its start up to ``now()``: with nothing due the scan stops at
its first entry, so an idle sweep costs one probe whatever the number of schedules.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ARRAY, String, Table, any_, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

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


def declarative_in(session: Session, environment_ids: Collection[str]) -> list[Schedule]:
    """These environments' declarative schedules, locked in id order (a registration
    rewrites them; registrations running at once wait for each other in one order)."""
    if not environment_ids:
        return []
    return list(
        session.scalars(
            select(Schedule)
            .where(
                Schedule.environment_id == any_(_strings("environment_ids", environment_ids)),
                Schedule.type == ScheduleType.DECLARATIVE,
            )
            .order_by(Schedule.id)
            .with_for_update()
        )
    )


def insert_declarative(session: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    """Create these declarative schedules (keys ``id``, ``project_id``, ``environment_id``,
    ``task_identifier``, ``cron``, ``timezone``, ``next_tick_at``), active, in one
    statement; one whose task already has one in its environment (a concurrent
    registration made it) is left as that one made it."""
    if not rows:
        return
    rows = sorted(rows, key=lambda row: (row["environment_id"], row["task_identifier"]))
    session.execute(_INSERT_DECLARATIVE, {
        "now": now, "type": str(ScheduleType.DECLARATIVE),
        **{column: [row[column] for row in rows] for column in (
            "id", "project_id", "environment_id", "task_identifier", "cron", "timezone",
            "next_tick_at",
        )},
    })


def reactivate_declarative(session: Session, rows: list[dict[str, Any]]) -> None:
    """Give these schedules (keys ``id``, ``cron``, ``timezone``, ``next_tick_at``) their
    declared cron and make them active, in one statement."""
    if not rows:
        return
    rows = sorted(rows, key=lambda row: str(row["id"]))
    session.execute(_REACTIVATE_DECLARATIVE, {
        column: [row[column] for row in rows]
        for column in ("id", "cron", "timezone", "next_tick_at")
    })
    _expire_schedules(session, {str(row["id"]) for row in rows})


def deactivate(session: Session, schedule_ids: Collection[str]) -> None:
    """No tick fires for these schedules until they are active again."""
    if not schedule_ids:
        return
    session.execute(
        update(Schedule)
        .where(Schedule.id == any_(_strings("schedule_ids", schedule_ids)))
        .values(active=False, next_tick_at=None, updated_at=func.now())
    )
    _expire_schedules(session, set(schedule_ids))


def _expire_schedules(session: Session, schedule_ids: set[str]) -> None:
    """Expire this session's copies of these schedules, and nothing else it holds: a
    registration holds every environment it serves, which ``expire_all`` would make it
    reload one by one."""
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Schedule) and loaded.id in schedule_ids:
            session.expire(loaded)


def _strings(name: str, values: Collection[str]) -> BindParameter[Sequence[str]]:
    """One array parameter (``= ANY(…)``), whatever the number of values."""
    value: Sequence[str] = sorted(values)
    return bindparam(name, value, type_=ARRAY(String))


_INSERT_DECLARATIVE = text(
    """
    INSERT INTO schedules (id, project_id, environment_id, task_identifier, type, cron,
        timezone, deduplication_key, user_provided_deduplication_key, active, next_tick_at,
        created_at, updated_at)
    SELECT id, project_id, environment_id, task_identifier, :type, cron, timezone,
        task_identifier, false, true, next_tick_at, :now, :now
    FROM unnest(CAST(:id AS varchar[]), CAST(:project_id AS varchar[]),
                CAST(:environment_id AS varchar[]), CAST(:task_identifier AS varchar[]),
                CAST(:cron AS varchar[]), CAST(:timezone AS varchar[]),
                CAST(:next_tick_at AS timestamptz[]))
        AS s(id, project_id, environment_id, task_identifier, cron, timezone, next_tick_at)
    ORDER BY environment_id, task_identifier
    ON CONFLICT ON CONSTRAINT uq_schedules_env_type_key DO NOTHING
    """
)
_REACTIVATE_DECLARATIVE = text(
    """
    UPDATE schedules s SET cron = d.cron, timezone = d.timezone, active = true,
        next_tick_at = d.next_tick_at, updated_at = now()
    FROM unnest(CAST(:id AS varchar[]), CAST(:cron AS varchar[]), CAST(:timezone AS varchar[]),
                CAST(:next_tick_at AS timestamptz[])) AS d(id, cron, timezone, next_tick_at)
    WHERE s.id = d.id
    """
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
