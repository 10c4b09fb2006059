"""Promotion of delayed runs: Postgres holds the truth, Celery ETA tasks are a fast path.

Postgres holds ``delayed_until`` and ``schedule_token`` (bumped by every reschedule, cancel,
promotion and expiry). A timer (``reprise.promote_delayed_run``) carries ``(run_id, token)``
and promotes by one compare-and-set on status DELAYED, that token and ``delayed_until <=
now()`` on the database clock, so duplicate, redelivered and stale timers are no-ops; one
that fires early re-arms itself. Only runs due within the horizon get a timer; the sweep
:func:`promote_due_runs` arms the rest as they enter it and promotes overdue runs directly.
Why the two tiers and the horizon: docs/architecture.md#timers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared import broker, metrics
from reprise_server.shared.db import db_now, drain, on_commit
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs import repository as runs_repo
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus
from reprise_server.shared.timers import repository as repo
from reprise_server.shared.timers.arming import horizon

log = logging.getLogger("reprise.timers")

DEFAULT_BATCH_SIZE = 5000


def promote_run(session: Session, run_id: str, token: int) -> Run | None:
    """What a timer does: promote the run if ``token`` is current and the run is due.

    Returns the promoted run, or None when the timer is stale, a duplicate, or early.
    """
    promoted = lifecycle.promote(session, run_id, token)
    if promoted is not None:
        metrics.observe_promotion_lateness("timer", [promoted.delayed_until], promoted.dispatched_at)
        return promoted
    run = runs_repo.get_run(session, None, run_id)
    if (
        run is not None
        and run.status is RunStatus.DELAYED
        and run.schedule_token == token
        and run.delayed_until is not None
    ):
        # Fired early by the database clock: wait for the rest, measured on that clock.
        # (Due, it is held by another transaction: that one, or the sweep, promotes it.)
        remaining = (run.delayed_until - db_now(session)).total_seconds()
        if remaining > 0:
            on_commit(session, lambda: broker.arm_timer_in(run_id, token, remaining))
    return None


@dataclass(frozen=True)
class SweepResult:
    promoted: int
    armed: int


def promote_due_runs(session: Session, batch_size: int = DEFAULT_BATCH_SIZE) -> SweepResult:
    """Promote every overdue DELAYED run, then arm timers for runs entering the horizon.

    Batched (``batch_size`` rows per statement, until none is left) and safe to run
    concurrently with itself: rows are claimed with ``FOR UPDATE SKIP LOCKED`` and every
    change is a compare-and-set, so each run is promoted, and each token armed, once.
    Messages are published after the caller commits.
    """
    if not repo.any_due_or_entering(session, horizon()):
        return SweepResult(promoted=0, armed=0)

    def promote_batch(due_from: datetime | None) -> tuple[list[str], Any]:
        batch = lifecycle.promote_due(session, repo.due_candidates(batch_size, due_from))
        metrics.observe_promotion_lateness("sweep", batch.progress)
        return batch.run_ids, batch.last

    promoted = drain(promote_batch, batch_size)

    def arm_batch(due_from: datetime | None) -> tuple[list[tuple[str, int, datetime]], Any]:
        entering = repo.arm_entering_batch(session, horizon(), batch_size, due_from)
        return entering, max((due for _, _, due in entering), default=None)

    armed = drain(arm_batch, batch_size)
    if armed:
        now = db_now(session)
        timers = [(run_id, token, max(due, now)) for run_id, token, due in armed]
        on_commit(session, lambda: broker.arm_timers(timers))
    if promoted or armed:
        log.info("timer sweep promoted %d overdue runs, armed %d timers", len(promoted), len(armed))
    return SweepResult(promoted=len(promoted), armed=len(armed))
