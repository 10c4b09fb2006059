"""The Celery tasks of run execution and timers: thin adapters over ``shared``.

Arguments are ids and small values; every task reloads state, guards on it, and is safe
to run twice and concurrently with itself.
"""

from __future__ import annotations

import logging
from typing import Any

from shared import broker
from shared.db import transaction
from shared.timers import service as timers
from workers import execution
from workers.runtime import identity

log = logging.getLogger("reprise.worker")

app = broker.celery_app()


@app.task(name=broker.EXECUTE_RUN, bind=True)
def execute_run(self: Any, run_id: str) -> dict[str, str]:
    me = identity()
    outcome = execution.execute_run(run_id, me.registry, me.name, me.version)
    log.info("run %s -> %s %s", run_id, outcome.status, outcome.detail)
    return {"run_id": run_id, "status": str(outcome.status)}


@app.task(name=broker.PROMOTE_RUN)
def promote_delayed_run(run_id: str, token: int) -> bool:
    with transaction() as session:
        return timers.promote_run(session, run_id, token) is not None
