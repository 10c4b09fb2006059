"""A freed slot's next run executes in the worker that freed it.

When a run holding a concurrency slot finishes, the transaction that ends it frees the slot
and admits the next run waiting under that limit. Published, that run would cost a message
through Redis and a delivery by the worker's main process before any worker could start
it; most of a limited run's extra cost over an unlimited one. Instead, the worker that
freed the slot executes it next, in the same pool process, and so on with the run *that*
one admits, for up to ``worker_handoff_seconds``; then, or once the worker is shutting
down, the run it was handed is published as any admitted run.

Nothing is weakened by it (docs/concurrency.md#hand-off):

* The handed run is admitted and committed exactly as a published one: QUEUED, holding its
  slot, ``dispatched_at`` stamped. Only its message is missing, and a worker lost between
  that commit and the run's claim leaves a queued run without a message, which is what a
  lost publish leaves too: the recovery sweep republishes it.
* Only a run bound for the Celery queue the finishing run came from is taken (one this
  worker consumes); runs for other queues are published.
* Each handed run is claimed, executed and ended by :func:`workers.execution.execute_run`,
  the same steps as a delivered one, so its claim, heartbeat and compare-and-set moves
  are unchanged.

Flower sees each handed run as a ``reprise.execute_run`` task of its own (received,
started, succeeded or failed, on this worker, its parent the task that handed it over),
as it would had it been delivered.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from celery.signals import worker_init, worker_shutting_down

from reprise_server.shared import broker, metrics
from reprise_server.shared.flow.admission import Taker
from reprise_server.shared.logs import bind_log_context, unbind_log_context
from reprise_server.shared.runs.attempts import Outcome
from reprise_server.shared.settings import get_settings
from reprise_server.workers import execution
from reprise_server.workers.outcomes import RunFailed
from reprise_server.workers.runtime import identity

log = logging.getLogger("reprise.worker")

# Set in the worker's main process when it starts shutting down; shared memory created
# before the pool forks, so every pool process sees it (a warm shutdown waits for running
# tasks: a pool process must not keep starting handed runs meanwhile).
_STOPPING = multiprocessing.RawValue(ctypes.c_bool, False)
# The task events of handed runs are sent this many to a message (each run has three).
EVENTS_BUFFERED = 30


# The worker's node name (``name@host``), what its task events carry: set before the pool
# forks. A task's ``request.hostname`` is that name in a prefork child but only the host
# in a thread pool.
_NODENAME: str | None = None


@worker_shutting_down.connect
def _stop_handing_off(**_: Any) -> None:
    _STOPPING.value = True


@worker_init.connect
def _remember_nodename(sender: Any = None, **_: Any) -> None:
    global _NODENAME
    _NODENAME = getattr(sender, "hostname", None)


def taker_for(request: Any) -> Taker | None:
    """A taker for the runs the execution of ``request`` admits; None when hand-off is off,
    the worker is stopping, or the delivery does not say which queue it came from."""
    queue = (request.delivery_info or {}).get("routing_key")
    if not queue or _STOPPING.value or get_settings().worker_handoff_seconds <= 0:
        return None
    return Taker(queue)


def publish_taken(taker: Taker | None) -> None:
    """Publish the run handed to ``taker``, if any (its execution will not happen here)."""
    if taker is None or taker.taken is None:
        return
    run_id, queue = taker.taken
    taker.taken = None
    metrics.observe_handoff("published")
    try:
        broker.dispatch_run(run_id, queue)
    except Exception:  # the recovery sweep republishes a queued run without a message
        log.exception("run %s: could not publish the run handed over; recovery will", run_id)


def execute_taken(task: Any, taker: Taker | None) -> None:
    """Execute the runs handed to ``taker`` one after another (each may hand over the
    next), until none is handed, ``worker_handoff_seconds`` have passed, or the worker is
    stopping. A run handed over and not executed here is published."""
    if taker is None or taker.taken is None:
        return
    deadline = time.monotonic() + get_settings().worker_handoff_seconds
    try:
        with _task_events(task) as events:
            while taker.taken is not None:
                if _STOPPING.value or time.monotonic() >= deadline or not _execute_one(
                    taker, events
                ):
                    return
    finally:
        publish_taken(taker)


def _execute_one(taker: Taker, events: _Events) -> bool:
    """Execute the run handed to ``taker``; False if it could not be (it is handed back)."""
    assert taker.taken is not None
    run_id, queue = taker.taken
    taker.taken = None
    task_id = events.started(run_id)
    token = bind_log_context(celery_task_id=task_id, run_id=run_id)
    try:
        me = identity()
        outcome = execution.execute_run(run_id, me.registry, me.name, me.version, taker)
    except Exception as exc:
        # Its claim or a step could not reach Postgres: as a delivered run's task would
        # keep its message, it is published again (a run claimed meanwhile is recovered
        # once its heartbeat is stale, as any); the hand-off stops there.
        log.exception("run %s (handed over) could not be executed; publishing it", run_id)
        events.failed(task_id, repr(exc))
        publish_taken(taker)  # a run its end handed over before the error, if any
        taker.taken = (run_id, queue)
        return False
    finally:
        unbind_log_context(token)
    metrics.observe_handoff("executed")
    log.info("run %s -> %s (in the slot its predecessor freed)%s",
             run_id, outcome.status, f" {outcome.detail}" if outcome.detail else "")
    events.ended(task_id, outcome)
    return True


class _Events:
    """The Celery task events of handed runs, so Flower shows each as the task it would
    have been had it been delivered: buffered and sent several to a message, as the worker's
    main process sends its own (``dispatcher`` None: the worker sends no task events)."""

    def __init__(self, task: Any, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.parent_id = task.request.id
        self.root_id = task.request.root_id or task.request.id
        self.began: dict[str, float] = {}

    def started(self, run_id: str) -> str:
        task_id = str(uuid.uuid4())
        self.began[task_id] = time.monotonic()
        self._send("task-received", uuid=task_id, name=broker.EXECUTE_RUN,
                   args=repr([run_id]), kwargs="{}", root_id=self.root_id,
                   parent_id=self.parent_id, retries=0, eta=None, expires=None)
        self._send("task-started", uuid=task_id)
        return task_id

    def ended(self, task_id: str, outcome: Outcome) -> None:
        if outcome.error is not None:
            exc = RunFailed.of(outcome.run_id, str(outcome.status), outcome.error)
            self.failed(task_id, repr(exc))
            return
        runtime = time.monotonic() - self.began.pop(task_id, time.monotonic())
        result = {"run_id": outcome.run_id, "status": str(outcome.status)}
        self._send("task-succeeded", uuid=task_id, result=repr(result), runtime=runtime)

    def failed(self, task_id: str, exception: str) -> None:
        self.began.pop(task_id, None)
        self._send("task-failed", uuid=task_id, exception=exception, traceback="")

    def _send(self, kind: str, **fields: Any) -> None:
        if self.dispatcher is None:
            return
        try:
            self.dispatcher.send(kind, **fields)
        except Exception:  # monitoring must never fail a run
            log.warning("could not send task events of a handed run", exc_info=True)

    def flush(self) -> None:
        if self.dispatcher is None:
            return
        try:
            self.dispatcher.flush()
        except Exception:
            log.warning("could not send task events of a handed run", exc_info=True)


@contextmanager
def _task_events(task: Any) -> Iterator[_Events]:
    """Task events for the runs handed over after ``task``, over one pooled producer,
    flushed when the hand-off ends."""
    dispatcher = None
    with ExitStack() as stack:
        if task.app.conf.worker_send_task_events:
            try:
                producer = stack.enter_context(task.app.amqp.producer_pool.acquire(block=True))
                dispatcher = stack.enter_context(task.app.events.Dispatcher(
                    producer.connection, _NODENAME or task.request.hostname,
                    channel=producer.channel,
                    buffer_group=("task",), buffer_limit=EVENTS_BUFFERED,
                ))
            except Exception:
                log.warning("could not send task events of handed runs", exc_info=True)
        events = _Events(task, dispatcher)
        try:
            yield events
        finally:
            events.flush()
