"""The Celery tasks of run execution and timers: thin adapters over ``shared``.

Arguments are ids and small values; every task reloads state, guards on it, and is safe
to run twice and concurrently with itself.
"""

from __future__ import annotations

import logging
from typing import Any

from reprise_server.shared import broker
from reprise_server.shared.db import transaction
from reprise_server.shared.durable import service as durable
from reprise_server.shared.timers import service as timers
from reprise_server.workers import execution, handoff
from reprise_server.workers.outcomes import RunFailed
from reprise_server.workers.runtime import identity
from reprise_server.workers.transient import TRANSIENT_DB_ERRORS

log = logging.getLogger("reprise.worker")

app = broker.celery_app()


# A task that cannot reach Postgres keeps its message: it is republished with backoff
# (capped at 10 s) instead of being consumed without effect; past the last retry the
# recovery sweep still finds the run.
DB_RETRIES: dict[str, Any] = {
    "max_retries": 12, "retry_backoff": 1, "retry_backoff_max": 10, "retry_jitter": True,
}
# Margin after a holder's heartbeat would go stale before looking again.
WATCH_MARGIN_SECONDS = 1.0


@app.task(name=broker.EXECUTE_RUN, bind=True, autoretry_for=TRANSIENT_DB_ERRORS,
          dont_autoretry_for=(RunFailed,), throws=(RunFailed,), acks_on_failure=True,
          **DB_RETRIES)
def execute_run(self: Any, run_id: str, watch: str | bool | None = None) -> dict[str, str]:
    """Execute a run. A redelivered message (its worker was lost) that finds the run still
    held by a worker whose heartbeat is fresh is not dropped: it comes back when that
    heartbeat would have gone stale (``watch`` names that holder), so a run whose worker
    died is re-executed after the stale window, never while its first execution could
    still be alive. Once another worker holds the run, the watch ends.

    A run its end admits into the slot it freed is executed next, here
    (:mod:`workers.handoff`)."""
    me = identity()
    taker = handoff.taker_for(self.request)
    try:
        outcome = execution.execute_run(run_id, me.registry, me.name, me.version, taker)
    except BaseException:
        handoff.publish_taken(taker)
        raise
    try:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        watching = redelivered or watch is True or (watch and watch == outcome.holder)
        if outcome.held_for is not None and watching:
            broker.dispatch_run(
                run_id, outcome.queue, countdown=outcome.held_for + WATCH_MARGIN_SECONDS,
                watch=outcome.holder or "unknown",
            )
            log.info("run %s is held by a live worker; looking again in %.1fs", run_id,
                     outcome.held_for + WATCH_MARGIN_SECONDS)
        else:
            log.info("run %s -> %s %s", run_id, outcome.status, outcome.detail)
    finally:
        handoff.execute_taken(self, taker)
    if outcome.error is not None:
        # This delivery ended the run in failure, and that is committed: the task fails
        # (its message is still acknowledged, and it is not retried).
        raise RunFailed.of(run_id, str(outcome.status), outcome.error)
    return {"run_id": run_id, "status": str(outcome.status)}


# Its strategy lets go of a timer the moment a newer one for the same run arrives, so a
# reschedule storm does not keep every superseded timer in memory until its ETA.
@app.task(name=broker.PROMOTE_RUN, autoretry_for=TRANSIENT_DB_ERRORS,
          Strategy="reprise_server.workers.held_timers:superseding_timers", **DB_RETRIES)
def promote_delayed_run(run_id: str, token: int) -> bool:
    with transaction() as session:
        return timers.promote_run(session, run_id, token) is not None


@app.task(name=broker.COMPLETE_WAITPOINT, autoretry_for=TRANSIENT_DB_ERRORS, **DB_RETRIES)
def complete_waitpoint(waitpoint_id: str) -> bool:
    """A time wait's timer (or a token's timeout): completes the waitpoint if due, which
    queues the runs waiting on it. Duplicates and early firings are harmless."""
    with transaction() as session:
        return durable.complete_due(session, waitpoint_id)
