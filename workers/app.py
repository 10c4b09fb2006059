"""The worker's Celery app: shared broker settings, the tasks, and the beat schedule.

Task modules register on :func:`shared.broker.celery_app` (the one app every process
builds), so importing them here is the only registration, and none of them imports this
module back.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from reprise_server.shared import broker
from reprise_server.shared.db import dispose_engines
from reprise_server.shared.settings import get_settings
from reprise_server.workers import command_tasks, monitoring, sweeps, tasks
from reprise_server.workers.runtime import boot

TASK_MODULES = (tasks, command_tasks, sweeps)


def create_app() -> Celery:
    app = broker.celery_app()
    app.conf.beat_schedule = sweeps.beat_schedule(get_settings())
    monitoring.install(app)  # liveness files for probes, sweep metrics, log context
    return app


app = create_app()


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Connections pooled by the parent must not be shared with forked children.
    dispose_engines()
    # A prefork child leaves its parent's process group: `kill -- -PGID`, a terminal and
    # many supervisors signal a whole group, and only the parent should get it, to do the
    # warm shutdown (finish running tasks, hand back the rest); it stops its children
    # itself. A SIGTERM to every process of a cgroup (systemd) does reach the children:
    # they ignore it unless the parent sent it (workers/pool.py).
    os.setpgid(0, 0)


@worker_init.connect
def _register_worker(sender: Any = None, **_: Any) -> None:
    # The control process applies commands and sweeps; it never loads user code.
    if app.conf.get(monitoring.ROLE_SETTING) != "control":
        boot()
