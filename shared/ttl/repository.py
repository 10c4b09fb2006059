"""All SQL for TTL expiry.

The sweep walks the partial index ``ix_runs_queued_ttl`` (QUEUED runs with a TTL, by
``ttl_expires_at``): with nothing due, that is one index probe that finds no entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.runs import repository as runs_repo
from shared.runs.models import Run
from shared.runs.states import RunStatus

QUEUED = RunStatus.QUEUED.value


def _expirable() -> list[Any]:
    """Due and never dequeued: a run handed back to its queue by a worker keeps running."""
    return [Run.ttl_expires_at <= func.now(), Run.dequeued_at.is_(None)]


# Built once: this is all an idle sweep runs, every few seconds, so it skips building
# (and caching) the batch update when there is nothing to expire.
# Ordered by the index's key: with a bare LIMIT 1 the planner may bet on finding a match
# early in some other index of QUEUED runs, and walk all of them when there is none.
_ANY_DUE = (
    select(Run.id)
    .where(Run.status == QUEUED, Run.ttl_expires_at <= func.now(), Run.dequeued_at.is_(None))
    .order_by(Run.ttl_expires_at)
    .limit(1)
)


def any_due(session: Session) -> bool:
    """Whether any run is due to expire: one probe of ``ix_runs_queued_ttl``."""
    return session.connection().execute(_ANY_DUE).first() is not None


def expire_due_batch(
    session: Session, batch_size: int, due_from: datetime | None, values: dict[str, Any]
) -> runs_repo.BatchTransition:
    """Expire up to ``batch_size`` due runs, earliest first; ``last`` is the latest expiry
    time among them.

    ``due_from`` resumes the index walk where the previous batch of the same transaction
    stopped (the rows it expired still have index entries until vacuum; rescanning them
    on every batch would make a large sweep quadratic).
    """
    candidates = (
        select(Run.id)
        .where(Run.status == QUEUED, *_expirable())
        .order_by(Run.ttl_expires_at)
        .limit(batch_size)
    )
    if due_from is not None:
        candidates = candidates.where(Run.ttl_expires_at >= due_from)
    return runs_repo.transition_many(
        session,
        RunStatus.EXPIRED,
        candidates,
        sources={RunStatus.QUEUED},
        progress=Run.ttl_expires_at,
        values=values,
    )


def expire_if_due(session: Session, run_id: str, values: dict[str, Any]) -> Run | None:
    """QUEUED -> EXPIRED for one run, if its TTL passed and it was never dequeued."""
    return runs_repo.transition(
        session,
        run_id,
        RunStatus.EXPIRED,
        sources={RunStatus.QUEUED},
        where=_expirable(),
        values=values,
    )
