"""Executing a run on a worker (§9): the runtime around the user's task function.

Each step is its own short transaction over a session-first step of
:mod:`shared.runs.attempts` (claim, begin the attempt, checkpoints, finish), so a worker
that dies mid-run leaves the run in a state the recovery sweep understands. Here live the
parts that are about running user code: the task's :class:`~reprise.context.TaskContext`,
the heartbeat thread, and interrupting the task when its run is canceled or exceeds its
``maxDuration``.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from reprise.context import AttemptInfo, RunInfo, TaskContext
from reprise.registry import Registry
from shared.db import transaction
from shared.runs import attempts
from shared.runs.attempts import AttemptResult, Failed, Interrupted, Outcome, Succeeded
from shared.runs.models import Attempt, Run
from shared.runs.schemas import TriggerOptions
from shared.settings import get_settings

log = logging.getLogger("reprise.execution")


class RunInterrupted(BaseException):
    """Raised inside a task's thread when its run was canceled or hit maxDuration.

    A BaseException so that a task's ``except Exception`` cannot swallow it.
    """

    reason: str = "canceled"


class RunTimedOut(RunInterrupted):
    reason = "timed_out"


class RunCanceled(RunInterrupted):
    reason = "canceled"


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    """Interrupt a thread at its next bytecode (works in thread pools; blocking C calls
    such as a long ``time.sleep`` finish first)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


def _error_of(exc: BaseException) -> dict[str, Any]:
    return {
        "message": str(exc) or type(exc).__name__,
        "name": type(exc).__name__,
        "stackTrace": "".join(traceback.format_exception(exc))[-8000:],
    }


class Heartbeat(threading.Thread):
    """Keeps ``heartbeat_at`` fresh and interrupts the task when its run is canceled
    or exceeds ``maxDuration``."""

    def __init__(
        self, run_id: str, worker: str, task_thread: int, max_duration: float | None,
        interval: float,
    ) -> None:
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.run_id = run_id
        self.worker = worker
        self.task_thread = task_thread
        self.deadline = time.monotonic() + max_duration if max_duration else None
        self.stopped = threading.Event()
        self.interrupted: type[RunInterrupted] | None = None
        self.interval = interval

    def run(self) -> None:
        while not self.stopped.wait(self._next_wait()):
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._interrupt(RunTimedOut)
                return
            try:
                with transaction() as session:
                    alive = attempts.record_heartbeat(session, self.run_id, self.worker)
            except Exception:
                log.warning("heartbeat failed for %s", self.run_id, exc_info=True)
                continue
            if not alive:
                self._interrupt(RunCanceled)
                return

    def _next_wait(self) -> float:
        if self.deadline is None:
            return self.interval
        return max(0.0, min(self.interval, self.deadline - time.monotonic()))

    def _interrupt(self, exc: type[RunInterrupted]) -> None:
        if self.stopped.is_set():
            return
        self.interrupted = exc
        _raise_in_thread(self.task_thread, exc)

    def stop(self) -> None:
        self.stopped.set()


def _context(run: Run, attempt: Attempt, environment: str) -> TaskContext:
    def save_checkpoint(state: Any) -> int:
        with transaction() as session:
            return attempts.save_checkpoint(session, run.id, attempt.number, state)

    def trigger_child(task_id: str, payload: Any, options: dict[str, Any]) -> str:
        with transaction() as session:
            return attempts.trigger_child(
                session, run, task_id, payload, TriggerOptions.model_validate(options)
            )

    return TaskContext(
        run=RunInfo(
            id=run.id,
            task_identifier=run.task_identifier,
            is_replay=run.replayed_from is not None,
            replayed_from=run.replayed_from,
            tags=list(run.tags or []),
            is_test=run.is_test,
            depth=run.depth,
            root_run_id=run.root_run_id,
            parent_run_id=run.parent_run_id,
            version=run.version,
            environment=environment,
        ),
        attempt=AttemptInfo(id=attempt.id, number=attempt.number),
        metadata=dict(run.metadata_ or {}),
        _checkpoint=save_checkpoint,
        _trigger=trigger_child,
    )


def _call(fn: Callable[[Any, TaskContext], Any], run: Run, ctx: TaskContext,
          worker: str) -> AttemptResult:
    """Call the task function under a heartbeat; what it returned, raised, or why it was
    interrupted."""
    heartbeat = Heartbeat(
        run.id, worker, threading.get_ident(), run.max_duration_seconds,
        get_settings().worker_heartbeat_seconds,
    )
    heartbeat.start()
    result: AttemptResult
    try:
        try:
            result = Succeeded(fn(run.payload, ctx))
        finally:
            heartbeat.stop()
    except RunInterrupted as exc:
        result = Interrupted("timed_out" if isinstance(exc, RunTimedOut) else "canceled")
    except Exception as exc:
        result = Failed(_error_of(exc))
    except BaseException:  # pragma: no cover - KeyboardInterrupt/SystemExit: stop the thread
        heartbeat.join(timeout=1)
        raise
    heartbeat.join(timeout=1)
    # A task that turned the interrupt into an error of its own was still interrupted.
    if isinstance(result, Failed) and heartbeat.interrupted is not None:
        result = Interrupted("timed_out" if heartbeat.interrupted is RunTimedOut else "canceled")
    return result


def execute_run(run_id: str, registry: Registry, worker: str, version: str) -> Outcome:
    """Execute one attempt of a run, end to end. Safe to call twice for the same run."""
    with transaction() as session:
        claimed = attempts.claim_run(session, run_id, worker)
    if isinstance(claimed, Outcome):
        return claimed
    definition = registry.get(claimed.task_identifier)
    if definition is None:
        with transaction() as session:
            return attempts.hand_back_missing_task(session, claimed)

    with transaction() as session:
        started = attempts.begin_attempt(session, run_id, worker, version)
        environment = attempts.environment_slug(session, claimed.environment_id) if started else ""
    if started is None:
        return Outcome(run_id, "lost", "claim lost before start")
    run, attempt = started
    began = time.monotonic()
    result = _call(definition, run, _context(run, attempt, environment), worker)
    elapsed_ms = int((time.monotonic() - began) * 1000)
    with transaction() as session:
        return attempts.finish_attempt(session, run, attempt.number, elapsed_ms, result)
