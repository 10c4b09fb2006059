"""Retention of run logs: lines older than ``run_log_retention_days`` are deleted."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

# Batches per sweep: a sweep is one transaction, so it stays short; a backlog is
# worked off over the following sweeps.
BATCHES_PER_SWEEP = 10


def delete_expired(
    session: Session, now: datetime, retention_days: float, batch_size: int,
    batches: int = BATCHES_PER_SWEEP,
) -> int:
    """Delete lines logged before ``now - retention_days``, ``batch_size`` per statement
    (through the ``logged_at`` index), at most ``batches`` statements; how many went."""
    if retention_days <= 0:
        return 0
    cutoff = now - timedelta(days=retention_days)
    deleted = 0
    for _ in range(batches):
        result = session.execute(
            text(
                "DELETE FROM run_logs WHERE seq IN (SELECT seq FROM run_logs "
                "WHERE logged_at < :cutoff ORDER BY logged_at LIMIT :batch)"
            ),
            {"cutoff": cutoff, "batch": batch_size},
        )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        deleted += count
        if count < batch_size:
            break
    return deleted
