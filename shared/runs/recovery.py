"""The backstop for runs whose Celery message was lost (Redis flushed, publish failed
after commit) or whose worker died mid-run: republish them. Execution is idempotent, so
a run republished while its message still exists is claimed once and the copy is a no-op.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from shared import broker
from shared.db import on_commit
from shared.runs.models import Run
from shared.runs.states import RunStatus
from shared.settings import get_settings


def redispatch_lost_runs(session: Session, batch_size: int = 1000) -> int:
    settings = get_settings()
    quiet = timedelta(seconds=settings.redispatch_after_seconds)
    stale = timedelta(seconds=settings.stale_run_seconds)
    candidates = (
        select(Run.id)
        .where(
            or_(
                Run.status.in_([RunStatus.QUEUED.value, RunStatus.RETRYING.value])
                & (Run.dispatched_at < func.now() - quiet)
                & func.coalesce(Run.next_attempt_at < func.now() - quiet, True),
                Run.status.in_([RunStatus.DEQUEUED.value, RunStatus.EXECUTING.value])
                & (Run.heartbeat_at < func.now() - stale)
                & func.coalesce(Run.dispatched_at < func.now() - stale, True),
            )
        )
        .limit(batch_size)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    ids = list(
        session.scalars(
            update(Run)
            .where(Run.id.in_(candidates))
            .values(dispatched_at=func.now())
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
    )
    if ids:

        def republish() -> None:
            for run_id in ids:
                broker.dispatch_run(run_id)

        on_commit(session, republish)
    return len(ids)
