"""Beat sweeps for time: promote/arm delayed runs (§7) and expire stale queued runs (§8).

Each sweep is one transaction that first claims its advisory lock
(:func:`shared.sweeps.service.claim_sweep`): a duplicate arriving while the same sweep runs
(a second beat, a backlog after workers were down) returns ``{"skipped": 1}`` at once.
The work itself is idempotent and uses ``FOR UPDATE SKIP LOCKED``, so even without the
lock two sweeps would split the rows, never apply one twice.
"""

from __future__ import annotations

import logging

from shared import broker
from shared.db import transaction
from shared.sweeps.service import claim_sweep
from shared.timers import service as timers
from shared.ttl import service as ttl
from workers.app import app

log = logging.getLogger("reprise.worker")


@app.task(name=broker.PROMOTE_DUE_RUNS)
def promote_due_runs() -> dict[str, int]:
    with transaction() as session:
        if not claim_sweep(session, broker.PROMOTE_DUE_RUNS):
            return {"skipped": 1}
        result = timers.promote_due_runs(session)
    return {"promoted": result.promoted, "armed": result.armed}


@app.task(name=broker.EXPIRE_STALE_RUNS)
def expire_stale_runs() -> dict[str, int]:
    with transaction() as session:
        if not claim_sweep(session, broker.EXPIRE_STALE_RUNS):
            return {"skipped": 1}
        expired = ttl.expire_stale_runs(session)
    return {"expired": expired}
