"""Reschedule: move a DELAYED run's ``delayedUntil`` and re-arm its timer.

The move is one compare-and-set (DELAYED -> DELAYED) that also bumps the run's schedule
token, so every timer armed for the old time carries a stale token and promotes nothing,
and the due-sweep no longer finds the run due at the old time. A duration is counted from
that move, under the run's row lock, so answers given later never carry an earlier time
for the same duration (docs/architecture.md#reschedule).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared.commands.errors import InvalidDelay, RunNotDelayed
from reprise_server.shared.durations import (
    DelayPolicy,
    DurationError,
    iso,
    parse_delay,
    parse_duration,
)
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs.models import Run

# Reschedule: a duration from now or a date-time that must be in the future; a JSON
# number is refused rather than guessed at (seconds? epoch milliseconds?).
RESCHEDULE_DELAY = DelayPolicy(numbers=False, past="reject")


def resolve_new_time(delay: str, now: datetime) -> datetime:
    """When the run becomes due: a duration from ``now`` or an ISO date, in the future."""
    try:
        return parse_delay(delay, now, RESCHEDULE_DELAY)
    except DurationError:
        raise InvalidDelay(delay) from None


def requested_move(delay: str, now: datetime) -> datetime | timedelta:
    """What a reschedule request asks for: a duration (counted from the move, see
    :func:`shared.runs.lifecycle.reschedule`) or a date-time, checked to be in the future
    at ``now``."""
    due = resolve_new_time(delay, now)
    try:
        return timedelta(seconds=parse_duration(delay))
    except DurationError:
        return due


def move_delayed_run(
    session: Session, run_id: str, due: datetime | timedelta, now: datetime
) -> Run:
    """Move a DELAYED run to ``due``; raises RunNotDelayed if it is not DELAYED any more."""
    moved = lifecycle.reschedule(session, run_id, due, now)
    if moved is None:
        raise RunNotDelayed()
    return moved


def result_of(run: Run) -> dict[str, Any]:
    return {"delayedUntil": iso(run.delayed_until), "scheduleToken": run.schedule_token}
