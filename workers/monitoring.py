"""What workers and beat do for operators: liveness files, sweep metrics, log context.

* **Liveness.** A worker touches ``<liveness_dir>/<queue_prefix>-worker.alive`` (the
  control process ``…-control.alive``) from its
  own timer (driven by the worker's event loop under prefork, so a wedged loop stops the
  touches); beat touches ``…-beat.alive`` on every scheduler tick, before it dispatches
  due entries. ``reprise healthcheck worker|beat`` (:mod:`workers.ops`) exits 0 only while
  the file is fresher than ``liveness_max_age_seconds``: a probe that proves the loop that
  does the work is turning, not just that the process exists.
* **Sweeps** (every task routed to the ``<prefix>.sweeps`` queue) are timed and counted by
  outcome through Celery's task signals, so a new sweep is measured without touching it.
* **Log context.** Each task binds its Celery task id and the run or command id it carries
  to the log context (:mod:`shared.logs`), so every line logged while it runs has them.
"""

from __future__ import annotations

import tempfile
import time
from contextvars import Token
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps
from celery.beat import PersistentScheduler
from celery.signals import task_postrun, task_prerun

from reprise_server.shared import broker, metrics
from reprise_server.shared.logs import bind_log_context, unbind_log_context
from reprise_server.shared.settings import Settings, get_settings

LIVENESS_PROCESSES = ("worker", "control", "beat")
# Set by `reprise control` on its app before it starts: which liveness file it touches.
ROLE_SETTING = "reprise_role"


def liveness_path(process: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    directory = Path(settings.liveness_dir or tempfile.gettempdir())
    return directory / f"{settings.queue_prefix}-{process}.alive"


def touch_liveness(process: str) -> None:
    path = liveness_path(process)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


class WorkerLiveness(bootsteps.StartStopStep):  # type: ignore[misc]
    """Touches the worker's liveness file now and every ``liveness_interval_seconds``."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        role = worker.app.conf.get(ROLE_SETTING) or "worker"
        touch_liveness(role)
        interval = get_settings().liveness_interval_seconds
        self.tref = worker.timer.call_repeatedly(interval, touch_liveness, (role,))

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


class LivenessScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's default scheduler, touching beat's liveness file on every tick and never
    sleeping longer than the liveness interval."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        touch_liveness("beat")
        delay = float(super().tick(*args, **kwargs))
        return min(delay, get_settings().liveness_interval_seconds)


def install(app: Celery) -> None:
    app.steps["worker"].add(WorkerLiveness)
    app.conf.beat_scheduler = f"{LivenessScheduler.__module__}:{LivenessScheduler.__name__}"


# --- task signals: sweep metrics and log context ------------------------------------------

_started: dict[str, tuple[float, Token[dict[str, Any]]]] = {}
# Tasks whose first argument is a run id, or a command id.
_RUN_TASKS = frozenset({broker.EXECUTE_RUN, broker.PROMOTE_RUN})
_COMMAND_TASKS = frozenset({broker.APPLY_COMMAND})


def is_sweep(task_name: str, settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    route = broker.celery_app().conf.task_routes.get(task_name) or {}
    return bool(route.get("queue") == broker.queue_names(settings)["sweeps"])


def sweep_label(task_name: str) -> str:
    return task_name.removeprefix("reprise.")


@task_prerun.connect
def _task_started(task_id: str, task: Any, args: Any = (), **_: Any) -> None:
    first = args[0] if args else None
    token = bind_log_context(
        celery_task_id=task_id,
        run_id=first if task.name in _RUN_TASKS else None,
        command_id=first if task.name in _COMMAND_TASKS else None,
    )
    _started[task_id] = (time.perf_counter(), token)


@task_postrun.connect
def _task_finished(
    task_id: str, task: Any, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    began, token = _started.pop(task_id, (None, None))
    if token is not None:
        try:
            unbind_log_context(token)
        except ValueError:  # bound in another context (should not happen): nothing to undo
            pass
    if began is None or not is_sweep(task.name):
        return
    items: dict[str, int] = {}
    if isinstance(retval, dict):
        items = {str(k): int(v) for k, v in retval.items() if isinstance(v, int) and k != "skipped"}
    elif isinstance(retval, int) and not isinstance(retval, bool):
        items = {"processed": retval}
    if state != "SUCCESS":
        outcome = "error"
    elif isinstance(retval, dict) and retval.get("skipped"):
        outcome = "skipped"
    else:
        outcome = "ok"
    metrics.observe_sweep(sweep_label(task.name), time.perf_counter() - began, outcome, items)
