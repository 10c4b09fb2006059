"""Arming promotion timers for runs due within the horizon (docs/architecture.md#timers).

Lives apart from :mod:`shared.timers.service` (promotion and the sweep) because the run
lifecycle arms a timer whenever it sets a run's ``delayed_until`` (trigger, reschedule),
and promotion itself is a lifecycle move: this module sits below both.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reprise_server.shared import broker
from reprise_server.shared.db import on_commit
from reprise_server.shared.settings import get_settings
from reprise_server.shared.timers import repository as repo


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
