"""Reschedule (§6): move a DELAYED run's ``delayedUntil`` and re-arm its timer.

The move is one compare-and-set (DELAYED -> DELAYED) that also bumps the run's schedule
token, so every timer armed for the old time carries a stale token and promotes nothing,
and the due-sweep no longer finds the run due at the old time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.commands.errors import InvalidDelay, RunNotDelayed
from shared.durations import DurationError, iso, resolve_delay
from shared.runs import repository as runs_repo
from shared.runs.models import Run
from shared.runs.states import RunStatus
from shared.timers.service import arm_if_within_horizon


def resolve_new_time(delay: str, now: datetime) -> datetime:
    """When the run becomes due: a duration from ``now`` or an ISO date, in the future."""
    try:
        due = resolve_delay(delay, now)
    except DurationError:
        raise InvalidDelay(delay) from None
    if due <= now:
        raise InvalidDelay(delay)
    return due


def move_delayed_run(session: Session, run_id: str, due: datetime, now: datetime) -> Run:
    """Move a DELAYED run to ``due``; raises RunNotDelayed if it is not DELAYED any more."""
    moved = runs_repo.transition(
        session,
        run_id,
        RunStatus.DELAYED,
        sources={RunStatus.DELAYED},
        values={"delayed_until": due, "schedule_token": Run.schedule_token + 1},
    )
    if moved is None:
        raise RunNotDelayed()
    arm_if_within_horizon(session, run_id, moved.schedule_token, due, now)
    return moved


def result_of(run: Run) -> dict[str, Any]:
    return {"delayedUntil": iso(run.delayed_until), "scheduleToken": run.schedule_token}
