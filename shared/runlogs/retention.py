"""Retention of run logs: lines older than ``run_log_retention_days`` are deleted."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

# Batches per sweep: a sweep is one transaction, so it stays short; a backlog is
# worked off over the following sweeps.
BATCHES_PER_SWEEP = 10


_HEAD_EXPIRED = text("SELECT logged_at < :cutoff FROM run_logs ORDER BY seq LIMIT 1")
# The first line (in seq order) not expired yet, within the next ``window`` lines; past
# the window if every one of them expired.
_BOUNDARY = text(
    "WITH head AS (SELECT seq, logged_at FROM run_logs ORDER BY seq LIMIT :window) "
    "SELECT coalesce(min(seq) FILTER (WHERE logged_at >= :cutoff), max(seq) + 1) FROM head"
)
_DELETE_BEFORE = text(
    "DELETE FROM run_logs WHERE seq IN (SELECT seq FROM run_logs WHERE seq < :boundary "
    "ORDER BY seq LIMIT :batch)"
)


def delete_expired(
    session: Session, now: datetime, retention_days: float, batch_size: int,
    batches: int = BATCHES_PER_SWEEP,
) -> int:
    """Delete lines logged before ``now - retention_days``, ``batch_size`` per statement,
    at most ``batches`` statements; how many went.

    Lines go oldest ``seq`` first (the primary key; ``run_logs`` keeps no index on
    ``logged_at``, which cost every line its upkeep): every line before the first one not
    expired yet. ``seq`` follows the order lines were flushed in, so a line stamped by a
    worker whose clock is behind goes when the lines flushed before it have gone, and one
    whose clock is ahead holds back those flushed after it: late by at most the clocks'
    difference, never early. A sweep with nothing to delete reads one line.
    """
    if retention_days <= 0:
        return 0
    cutoff = now - timedelta(days=retention_days)
    if not session.execute(_HEAD_EXPIRED, {"cutoff": cutoff}).scalar():
        return 0
    boundary = session.execute(
        _BOUNDARY, {"cutoff": cutoff, "window": batch_size * batches}).scalar_one()
    deleted = 0
    for _ in range(batches):
        result = session.execute(_DELETE_BEFORE, {"boundary": boundary, "batch": batch_size})
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        deleted += count
        if count < batch_size:
            break
    return deleted
