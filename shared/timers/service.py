"""Promotion of delayed runs.

Postgres holds ``delayed_until`` and a ``schedule_token`` that every reschedule, cancel
and promotion bumps. A timer (a Celery ETA task) carries ``(run_id, token)`` and promotes
only by a compare-and-set on that token and status DELAYED, so duplicate, redelivered and
stale timers are no-ops. Only runs due within the horizon get a timer; the sweep arms runs
as they enter it and promotes any overdue run directly, which is the backstop for timers
lost with Redis or a killed worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import broker
from shared.db import db_now, on_commit
from shared.runs import repository as runs_repo
from shared.runs.models import Run
from shared.runs.states import RunStatus
from shared.settings import get_settings


def _promotion_values() -> dict[str, object]:
    return {**runs_repo.entering_queue_values(), "schedule_token": Run.schedule_token + 1}


def arm_if_within_horizon(
    session: Session, run_id: str, token: int, due: datetime | None, now: datetime
) -> bool:
    """Give a run a timer after commit if it is due within the horizon."""
    if due is None:
        return False
    horizon = timedelta(seconds=get_settings().timer_horizon_seconds)
    if due - now > horizon:
        return False
    runs_repo.touch(session, run_id, timer_armed_token=token)
    on_commit(session, lambda: broker.arm_timer(run_id, token, due))
    return True


def promote_run(session: Session, run_id: str, token: int) -> Run | None:
    """What a timer does: promote the run if the token is current and it is due.

    A timer that fires early (clock skew between workers) re-arms itself for the due time.
    """
    promoted = runs_repo.transition(
        session,
        run_id,
        RunStatus.QUEUED,
        sources={RunStatus.DELAYED},
        where=[Run.schedule_token == token, Run.delayed_until <= func.now()],
        values=_promotion_values(),
    )
    if promoted is not None:
        on_commit(session, lambda: broker.dispatch_run(run_id))
        return promoted
    run = runs_repo.get_run(session, None, run_id)
    if (
        run is not None
        and run.status == RunStatus.DELAYED.value
        and run.schedule_token == token
        and run.delayed_until is not None
    ):
        due = run.delayed_until
        on_commit(session, lambda: broker.arm_timer(run_id, token, due))
    return None


@dataclass(frozen=True)
class SweepResult:
    promoted: int
    armed: int


def promote_due_runs(session: Session, batch_size: int = 5000) -> SweepResult:
    """Promote every overdue DELAYED run and arm timers for runs entering the horizon.

    Safe with two beats at once: rows are claimed with ``FOR UPDATE SKIP LOCKED`` and every
    change is a compare-and-set, so each run is promoted once.
    """
    promoted_ids: list[str] = []
    while True:
        due = (
            select(Run.id)
            .where(Run.status == RunStatus.DELAYED.value, Run.delayed_until <= func.now())
            .order_by(Run.delayed_until)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        ids = list(
            session.scalars(
                update(Run)
                .where(Run.id.in_(due), Run.status == RunStatus.DELAYED.value)
                .values(status=RunStatus.QUEUED.value, updated_at=func.now(), **_promotion_values())
                .returning(Run.id)
                .execution_options(synchronize_session=False)
            )
        )
        promoted_ids.extend(ids)
        if len(ids) < batch_size:
            break
    if promoted_ids:

        def dispatch_promoted() -> None:
            for run_id in promoted_ids:
                broker.dispatch_run(run_id)

        on_commit(session, dispatch_promoted)

    horizon = get_settings().timer_horizon_seconds
    now = db_now(session)
    entering = select(Run.id).where(
        Run.status == RunStatus.DELAYED.value,
        Run.delayed_until <= func.now() + timedelta(seconds=horizon),
        Run.timer_armed_token.is_distinct_from(Run.schedule_token),
    ).limit(batch_size).with_for_update(skip_locked=True).scalar_subquery()
    armed = list(
        session.execute(
            update(Run)
            .where(Run.id.in_(entering))
            .values(timer_armed_token=Run.schedule_token)
            .returning(Run.id, Run.schedule_token, Run.delayed_until)
            .execution_options(synchronize_session=False)
        )
    )
    if armed:

        def arm_entering() -> None:
            for run_id, token, due_at in armed:
                broker.arm_timer(run_id, token, max(due_at or now, now))

        on_commit(session, arm_entering)
    return SweepResult(promoted=len(promoted_ids), armed=len(armed))
