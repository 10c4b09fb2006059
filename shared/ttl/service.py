"""Expiry of runs that waited in their queue longer than their TTL (§8).

Which TTL applies is decided when the run is created
(:func:`shared.runs.service.effective_ttl`: the trigger's ``ttl``, else the task's, else
the environment's default — ``10m`` in dev, none elsewhere — clamped to
``max_ttl_seconds``; ``0`` means no TTL). The clock starts when the run first enters its
queue (:func:`shared.runs.repository.entering_queue_values`): at trigger for a run queued
at once, at promotion for a delayed run, when a version with its task registers for a run
waiting in PENDING_VERSION. Only runs never dequeued expire: once a worker has taken a
run, it runs (and retries) to the end.

Two paths expire a run, with the same values:

* the beat sweep :func:`expire_stale_runs` (task ``reprise.expire_stale_runs``), in
  batches claimed with ``FOR UPDATE SKIP LOCKED`` until none is left;
* a worker that dequeues an already-expired run (:func:`expire_if_stale`, from the
  claim), which expires it instead of executing it.

Expiry bumps the schedule token too, like every other exit from the queue.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from shared.runs.models import Run
from shared.settings import get_settings
from shared.ttl import repository as repo

log = logging.getLogger("reprise.ttl")

EXPIRED_MESSAGE = "Run expired because the TTL was reached"


def expiry_values() -> dict[str, Any]:
    return {
        "expired_at": func.now(),
        "finished_at": func.now(),
        "error": {"message": EXPIRED_MESSAGE},
        "schedule_token": Run.schedule_token + 1,
    }


def expire_stale_runs(session: Session, batch_size: int | None = None) -> int:
    """Expire every QUEUED, never-dequeued run whose TTL has passed; returns how many.

    Safe to run concurrently with itself and with workers claiming runs: rows are claimed
    with ``FOR UPDATE SKIP LOCKED`` and changed by compare-and-set on their status.
    """
    if not repo.any_due(session):
        return 0
    size = batch_size or get_settings().ttl_sweep_batch_size
    values = expiry_values()
    expired = 0
    due_from: datetime | None = None
    while True:
        batch = repo.expire_due_batch(session, size, due_from, values)
        expired += len(batch.run_ids)
        if len(batch.run_ids) < size:
            break
        due_from = batch.last
    if expired:
        log.info("ttl sweep expired %d runs", expired)
    return expired


def expire_if_stale(session: Session, run_id: str) -> Run | None:
    """Expire one run if its TTL passed and it was never dequeued (a worker's claim)."""
    return repo.expire_if_due(session, run_id, expiry_values())
