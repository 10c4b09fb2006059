"""Expiry of runs that waited in their queue longer than their TTL.

Two paths, one move (:func:`shared.runs.lifecycle.expire`): the beat sweep
:func:`expire_stale_runs`, in batches claimed with ``FOR UPDATE SKIP LOCKED``, and a worker
that dequeues an already-expired run. Only runs never dequeued expire. See
docs/architecture.md#ttl.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared.db import drain
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.settings import get_settings
from reprise_server.shared.ttl import repository as repo

log = logging.getLogger("reprise.ttl")


def expire_stale_runs(session: Session, batch_size: int | None = None) -> int:
    """Expire every QUEUED, never-dequeued run whose TTL has passed; returns how many.

    Safe to run concurrently with itself and with workers claiming runs: rows are claimed
    with ``FOR UPDATE SKIP LOCKED`` and changed by compare-and-set on their status.
    """
    if not repo.any_due(session):
        return 0
    size = batch_size or get_settings().ttl_sweep_batch_size

    def expire_batch(due_from: datetime | None) -> tuple[list[str], Any]:
        batch = lifecycle.expire_due(session, repo.due_candidates(size, due_from))
        return batch.run_ids, batch.last

    expired = len(drain(expire_batch, size))
    if expired:
        log.info("ttl sweep expired %d runs", expired)
    return expired
