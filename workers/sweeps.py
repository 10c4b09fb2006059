"""The beat sweeps, every one declared with :func:`sweep`.

A sweep is one transaction that first takes its advisory lock
(:func:`shared.sweeps.service.claim_sweep`; a duplicate returns ``{"skipped": 1}``), returns
its counts (turned into metrics by :mod:`workers.monitoring`), sends no task events and
logs an idle run at DEBUG. :func:`beat_schedule` gives each an expiry. See
docs/architecture.md#sweeps.
"""

from __future__ import annotations

import ast
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared import broker
from reprise_server.shared.commands import service as commands
from reprise_server.shared.db import db_now, transaction
from reprise_server.shared.durable import service as durable
from reprise_server.shared.flow import admission, queues
from reprise_server.shared.runlogs import retention
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.schedules import service as schedules
from reprise_server.shared.settings import Settings, get_settings
from reprise_server.shared.sweeps.service import claim_sweep
from reprise_server.shared.timers import service as timers
from reprise_server.shared.ttl import service as ttl

app = broker.celery_app()

Counts = dict[str, int]


@dataclass(frozen=True)
class Sweep:
    name: str
    every: Callable[[Settings], float]


SWEEPS: list[Sweep] = []


def _every_interval(settings: Settings) -> float:
    return settings.sweep_interval_seconds


def sweep(
    name: str, *, every: Callable[[Settings], float] = _every_interval
) -> Callable[[Callable[[Session], Counts]], Any]:
    """Make ``fn(session) -> counts`` the Celery task ``name``, run in one transaction
    under the sweep's advisory lock, and scheduled by beat ``every(settings)`` seconds."""

    def declare(fn: Callable[[Session], Counts]) -> Any:
        @functools.wraps(fn)
        def run() -> Counts:
            with transaction() as session:
                if not claim_sweep(session, name):
                    return {"skipped": 1}
                return fn(session)

        SWEEPS.append(Sweep(name, every))
        return app.task(name=name, send_events=False)(run)

    return declare


def _idle(return_value: object) -> bool:
    """Whether a sweep's logged result (Celery logs its repr) says it did nothing."""
    try:
        counts = ast.literal_eval(str(return_value))
    except (ValueError, SyntaxError):
        return False
    return isinstance(counts, dict) and (
        counts == {"skipped": 1} or not any(counts.values())
    )


class QuietIdleSweeps(logging.Filter):
    """Celery's "received" and "succeeded" lines for sweeps at DEBUG, unless the sweep did
    something: an idle stack's log is then quiet, and a sweep that expired, promoted or
    relayed something still says so at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = record.args
        if not isinstance(context, dict):
            return True
        if not any(entry.name == context.get("name") for entry in SWEEPS):
            return True
        if "return_value" in context and not _idle(context["return_value"]):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


for _logger in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(_logger).addFilter(QuietIdleSweeps())


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat's entries: every sweep, each message expiring quickly so that a backlog of the
    same sweep (queued while workers were down) does not run N times on restart (one sweep
    does all outstanding work anyway). ``expires`` is absolute on beat's clock, so it
    leaves room for clock skew with the workers."""
    options = {"expires": max(settings.sweep_interval_seconds * 2, 10.0)}
    return {
        entry.name.removeprefix("reprise.").replace("_", "-"): {
            "task": entry.name,
            "schedule": entry.every(settings),
            "options": options,
        }
        for entry in SWEEPS
    }


@sweep(broker.PROMOTE_DUE_RUNS)
def promote_due_runs(session: Session) -> Counts:
    """Promote overdue delayed runs and arm timers for those entering the horizon."""
    result = timers.promote_due_runs(session)
    return {"promoted": result.promoted, "armed": result.armed}


@sweep(broker.EXPIRE_STALE_RUNS)
def expire_stale_runs(session: Session) -> Counts:
    """Expire queued runs past their TTL."""
    return {"expired": ttl.expire_stale_runs(session)}


@sweep(broker.RELAY_PENDING_COMMANDS)
def relay_pending_commands(session: Session) -> Counts:
    """Republish commands whose message may be lost: none while the commands queue
    still holds messages (a backlog is not a loss)."""
    queued = broker.queued_commands()
    return {"relayed": commands.relay_pending_commands(session, queued_messages=queued)}


@sweep(broker.RECOVER_STALE_RUNS)
def recover_stale_runs(session: Session) -> Counts:
    """Republish runs whose execution message may be lost, or whose worker died."""
    return {"redispatched": lifecycle.redispatch_lost(session)}


@sweep(broker.FIRE_DUE_SCHEDULES)
def fire_due_schedules(session: Session) -> Counts:
    """Create one run for each schedule whose tick has come (the latest tick only, after
    an outage), and move each to its next tick."""
    return {"fired": schedules.fire_due_schedules(session)}


@sweep(broker.RELEASE_WAITING_RUNS)
def release_waiting_runs(session: Session) -> Counts:
    """Queue PENDING_VERSION runs whose environment's current version has their task
    (a registration releases its own; this catches a run inserted while it ran)."""
    return {"released": len(lifecycle.release_missed_pending_version(session, 1000))}


@sweep(broker.ADMIT_WAITING_RUNS)
def admit_waiting_runs(session: Session) -> Counts:
    """Flow control's backstop: admit runs waiting under limits that have room (a
    settlement that skipped them, a lapsed per-key override) and mend the limits'
    counters. Its locks on limits are taken without waiting (SKIP LOCKED), except those of
    the rare waiting runs found with no place in line: they enter it first, in id order,
    before it holds any limit."""
    return {"admitted": admission.sweep(session)}


@sweep(broker.RESUME_PARKED_RUNS)
def resume_parked_runs(session: Session) -> Counts:
    """Put back runs still parked in queues that were resumed (a resume puts back its
    first batch at once; the rest, or what a crash cut short, here). Its own transaction:
    the runs entering their limits' line settle when it commits."""
    return {"resumed": queues.resume_left_behind(session)}


@sweep(broker.DELETE_EXPIRED_RUN_LOGS)
def delete_expired_run_logs(session: Session) -> Counts:
    """Delete run log lines older than ``run_log_retention_days``, in batches (with
    nothing to delete, one probe of the ``logged_at`` index)."""
    settings = get_settings()
    return {"deleted": retention.delete_expired(
        session, db_now(session), settings.run_log_retention_days,
        settings.run_log_sweep_batch_size,
    )}


@sweep(broker.COMPLETE_DUE_WAITPOINTS)
def complete_due_waitpoints(session: Session) -> Counts:
    """Complete overdue time waits and time out overdue tokens (their timers were lost),
    queueing the runs that waited on them; arm timers for those entering the horizon."""
    result = durable.complete_due_waitpoints(session)
    return {"completed": result.completed, "armed": result.armed}
