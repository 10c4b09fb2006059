"""The worker's Celery app: shared broker settings, the tasks, and the beat schedule."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from shared import broker
from shared.db import dispose_engines
from shared.settings import get_settings


def create_app() -> Celery:
    app = broker.celery_app()
    app.conf.include = ["workers.tasks"]
    interval = get_settings().sweep_interval_seconds
    # Beat sweeps expire quickly: if beat was down, a backlog of the same sweep must not
    # run N times on restart (each sweep does all outstanding work anyway).
    sweep_options = {"expires": max(interval, 1.0) * 2}
    app.conf.beat_schedule = {
        "promote-due-runs": {
            "task": broker.PROMOTE_DUE_RUNS,
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


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Connections pooled by the parent must not be shared with forked children.
    dispose_engines()


@worker_init.connect
def _register_worker(**_: Any) -> None:
    from workers.runtime import boot

    boot()


import workers.tasks  # noqa: F401  (registers the task implementations on ``app``)
