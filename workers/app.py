"""The worker's Celery app: shared broker settings, the tasks, and the beat schedule."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from shared import broker
from shared.db import dispose_engines
from shared.settings import get_settings
from workers import monitoring


def create_app() -> Celery:
    app = broker.celery_app()
    app.conf.include = ["workers.tasks", "workers.command_tasks", "workers.sweep_tasks"]
    interval = get_settings().sweep_interval_seconds
    # Beat sweeps expire quickly: a backlog of the same sweep (queued while workers were
    # down) must not run N times on restart (each sweep does all outstanding work anyway,
    # and a duplicate running concurrently steps aside on its advisory lock). ``expires``
    # is absolute on beat's clock, so it leaves room for clock skew with the workers.
    sweep_options = {"expires": max(interval * 2, 10.0)}
    app.conf.beat_schedule = {
        "promote-due-runs": {
            "task": broker.PROMOTE_DUE_RUNS,
            "schedule": interval,
            "options": sweep_options,
        },
        "relay-pending-commands": {
            "task": broker.RELAY_PENDING_COMMANDS,
            "schedule": interval,
            "options": sweep_options,
        },
        "expire-stale-runs": {
            "task": broker.EXPIRE_STALE_RUNS,
            "schedule": interval,
            "options": sweep_options,
        },
        "recover-stale-runs": {
            "task": broker.RECOVER_STALE_RUNS,
            "schedule": max(interval, 5.0),
            "options": sweep_options,
        },
    }
    return app


app = create_app()
monitoring.install(app)  # liveness files for probes, sweep metrics, log context


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Connections pooled by the parent must not be shared with forked children.
    dispose_engines()


@worker_init.connect
def _register_worker(**_: Any) -> None:
    from workers.runtime import boot

    boot()


import workers.command_tasks  # registers the command tasks on ``app``
import workers.sweep_tasks  # registers the time sweeps on ``app``
import workers.tasks  # noqa: F401  (registers the task implementations on ``app``)
