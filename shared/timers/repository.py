"""All SQL for timers: arming marks and the due/entering-horizon batches of the sweep.

Both batch queries walk the partial index ``ix_runs_delayed_due`` (DELAYED runs by
``delayed_until``) and claim rows with ``FOR UPDATE SKIP LOCKED``, so two sweeps running
at once (two beats, or a backlog) split the work instead of waiting on each other, and
a row a request or a timer is changing right now is left to the next sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, Select, any_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus

DELAYED = RunStatus.DELAYED.value


# Built once: this is all an idle sweep runs, every few seconds.
_ANY_WORK = (
    select(Run.id)
    .where(
        Run.status == DELAYED,
        Run.delayed_until <= func.now() + bindparam("horizon", type_=Interval()),
        or_(
            Run.delayed_until <= func.now(),
            Run.timer_armed_token.is_distinct_from(Run.schedule_token),
        ),
    )
    .order_by(Run.delayed_until)  # the index's order: never a bet on another index
    .limit(1)
)


def any_due_or_entering(session: Session, horizon: timedelta) -> bool:
    """Whether a DELAYED run is overdue, or within ``horizon`` without a timer for its
    current token: one probe of ``ix_runs_delayed_due`` (over the horizon's few rows)."""
    return session.connection().execute(_ANY_WORK, {"horizon": horizon}).first() is not None


def mark_armed(session: Session, run_id: str, token: int) -> bool:
    """Record that a timer for ``token`` is (about to be) published."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == DELAYED, Run.schedule_token == token)
        .values(timer_armed_token=token)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def due_candidates(batch_size: int, due_from: datetime | None) -> Select[Any]:
    """Up to ``batch_size`` overdue DELAYED runs, earliest first, from ``due_from`` on
    (where the previous batch of the same transaction stopped)."""
    candidates = (
        select(Run.id)
        .where(Run.status == DELAYED, Run.delayed_until <= func.now())
        .order_by(Run.delayed_until)
        .limit(batch_size)
    )
    if due_from is not None:
        candidates = candidates.where(Run.delayed_until >= due_from)
    return candidates


def arm_entering_batch(
    session: Session, horizon: timedelta, batch_size: int, due_from: datetime | None
) -> list[tuple[str, int, datetime]]:
    """Mark up to ``batch_size`` DELAYED runs due within ``horizon`` whose current token
    has no timer yet as armed; returns ``(run_id, token, delayed_until)`` to publish.

    Same shape as :func:`shared.runs.cas.transition_many`: rows chosen and locked
    in the subquery, then one primary-key probe each."""
    candidates = (
        select(Run.id)
        .where(
            Run.status == DELAYED,
            Run.delayed_until <= func.now() + horizon,
            Run.timer_armed_token.is_distinct_from(Run.schedule_token),
        )
        .order_by(Run.delayed_until)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    if due_from is not None:
        candidates = candidates.where(Run.delayed_until >= due_from)
    rows: Sequence[Any] = session.connection().execute(
        update(Run)
        .where(Run.id == any_(func.array(candidates.scalar_subquery())))
        .values(timer_armed_token=Run.schedule_token)
        .returning(Run.id, Run.schedule_token, Run.delayed_until)
        .execution_options(synchronize_session=False)
    ).all()
    return [(row.id, row.schedule_token, row.delayed_until) for row in rows]
