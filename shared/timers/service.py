"""Promotion of delayed runs: Postgres holds the truth, Celery ETA tasks are a fast path (§7).

Two tiers:

* **Postgres** holds ``delayed_until`` and ``schedule_token``. Every reschedule, cancel
  and promotion bumps the token (and expiry too), so a timer is valid for exactly one
  ``(run, token)``.
* **Timers** are Celery ETA tasks (``reprise.promote_delayed_run``) carrying
  ``(run_id, token)``. A timer promotes by one compare-and-set — status DELAYED, the same
  token, and ``delayed_until <= now()`` on the database clock — so duplicate, redelivered
  and stale timers (the run was rescheduled, canceled or already promoted) are no-ops. A
  timer that fires early (a worker clock ahead of the database's) re-arms itself for the
  time that remains by the database clock.

Only runs due within ``timer_horizon_seconds`` (default 300 s) get a timer: when they are
created or rescheduled (:func:`arm_if_within_horizon`), or by the sweep as they enter the
horizon. The sweep (:func:`promote_due_runs`, beat task ``reprise.promote_due_runs``
every ``sweep_interval_seconds``, default 2 s) also promotes any overdue DELAYED run
directly: that is the backstop for a timer lost with Redis (FLUSHALL), with a worker
killed while holding it, or with a publish that failed after commit. A lost timer delays
its run by at most one sweep interval; nothing is ever lost, because nothing but Postgres
is the truth.

Why the horizon, and the settings that bound worker memory:

* A Redis-transport worker fetches an ETA message as soon as it can and keeps it in
  memory (unacknowledged) until its ETA; Redis redelivers any message left unacknowledged
  longer than ``broker_visibility_timeout`` (default 3600 s). So a far-future ETA message
  would sit in some worker's memory for its whole delay and be redelivered (and held
  again) every visibility timeout.
* Settings therefore require ``timer_horizon_seconds < broker_visibility_timeout / 2``
  (and the same for retry countdowns, ``retry_backoff_max_seconds``) and
  ``sweep_interval_seconds < timer_horizon_seconds``; ``Settings`` refuses to start
  otherwise. No ETA message Reprise publishes can outlive the visibility timeout.
* Timers go to the queue ``<queue_prefix>.timers`` (default ``reprise.timers``), consumed
  by every worker started without ``-Q`` (a dedicated timer worker can be run with
  ``-Q reprise.timers,reprise.sweeps``). The ETA messages workers hold in memory at any
  moment are those of runs due within the horizon — a few hundred bytes each, whatever
  the number of runs delayed further out, which wait in Postgres only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from shared import broker, metrics
from shared.db import db_now, on_commit
from shared.runs import repository as runs_repo
from shared.runs.models import Run
from shared.runs.states import RunStatus
from shared.settings import get_settings
from shared.timers import repository as repo

log = logging.getLogger("reprise.timers")

DEFAULT_BATCH_SIZE = 5000


def promotion_values() -> dict[str, Any]:
    """Columns set when a delayed run is promoted: it enters its queue (the TTL clock
    starts now) and the token moves on, so every timer still in flight is stale."""
    return {**runs_repo.entering_queue_values(), "schedule_token": Run.schedule_token + 1}


def horizon() -> timedelta:
    return timedelta(seconds=get_settings().timer_horizon_seconds)


def arm_if_within_horizon(
    session: Session, run_id: str, token: int, due: datetime | None, now: datetime
) -> bool:
    """Give a DELAYED run a timer (published after commit) if it is due within the horizon.

    Called in the transaction that set ``delayed_until`` and ``token`` (trigger,
    reschedule). Runs due later get their timer from the sweep when they enter it.
    """
    if due is None or due - now > horizon():
        return False
    if not repo.mark_armed(session, run_id, token):
        return False
    on_commit(session, lambda: broker.arm_timer(run_id, token, due))
    return True


def promote_run(session: Session, run_id: str, token: int) -> Run | None:
    """What a timer does: promote the run if ``token`` is current and the run is due.

    Returns the promoted run, or None when the timer is stale, a duplicate, or early.
    """
    promoted = repo.promote_if_current(session, run_id, token, promotion_values())
    if promoted is not None:
        metrics.observe_promotion_lateness("timer", [promoted.delayed_until], promoted.dispatched_at)
        on_commit(session, lambda: broker.dispatch_run(run_id))
        return promoted
    run = runs_repo.get_run(session, None, run_id)
    if (
        run is not None
        and run.status == RunStatus.DELAYED.value
        and run.schedule_token == token
        and run.delayed_until is not None
    ):
        # Fired early by the database clock: wait for the rest, measured on that clock.
        remaining = max((run.delayed_until - db_now(session)).total_seconds(), 0.0)
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
    promoted: list[str] = []
    due_from: datetime | None = None
    values = promotion_values()
    while True:
        batch = repo.promote_due_batch(session, batch_size, due_from, values)
        promoted.extend(batch.run_ids)
        metrics.observe_promotion_lateness("sweep", batch.progress)
        if len(batch.run_ids) < batch_size:
            break
        due_from = batch.last
    if promoted:
        on_commit(session, lambda: broker.dispatch_runs(promoted))

    now = db_now(session)
    armed: list[tuple[str, int, datetime]] = []
    due_from = None
    while True:
        entering = repo.arm_entering_batch(session, horizon(), batch_size, due_from)
        armed.extend(entering)
        if len(entering) < batch_size:
            break
        due_from = max(due for _, _, due in entering)
    if armed:
        timers = [(run_id, token, max(due, now)) for run_id, token, due in armed]
        on_commit(session, lambda: broker.arm_timers(timers))
    if promoted or armed:
        log.info("timer sweep promoted %d overdue runs, armed %d timers", len(promoted), len(armed))
    return SweepResult(promoted=len(promoted), armed=len(armed))
