"""All SQL for TTL expiry: the sweep's candidates.

The sweep walks the partial index ``ix_runs_queued_ttl`` (QUEUED runs with a TTL, by
``ttl_expires_at``): with nothing due, that is one index probe that finds no entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from reprise_server.shared.runs.lifecycle import EXPIRABLE
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus

QUEUED = RunStatus.QUEUED.value

# Built once: this is all an idle sweep runs, every few seconds, so it skips building
# (and caching) the batch update when there is nothing to expire.
# Ordered by the index's key: with a bare LIMIT 1 the planner may bet on finding a match
# early in some other index of QUEUED runs, and walk all of them when there is none.
_ANY_DUE = (
    select(Run.id)
    .where(Run.status == QUEUED, *EXPIRABLE)
    .order_by(Run.ttl_expires_at)
    .limit(1)
)


def any_due(session: Session) -> bool:
    """Whether any run is due to expire: one probe of ``ix_runs_queued_ttl``."""
    return session.connection().execute(_ANY_DUE).first() is not None


def due_candidates(batch_size: int, due_from: datetime | None) -> Select[Any]:
    """Up to ``batch_size`` due runs, earliest expiry first, from ``due_from`` on (where
    the previous batch of the same transaction stopped)."""
    candidates = (
        select(Run.id)
        .where(Run.status == QUEUED, *EXPIRABLE)
        .order_by(Run.ttl_expires_at)
        .limit(batch_size)
    )
    if due_from is not None:
        candidates = candidates.where(Run.ttl_expires_at >= due_from)
    return candidates
