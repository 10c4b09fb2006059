"""Executing a run on a worker: the runtime around the user's task function.

Each step is its own short transaction over a session-first step of
:mod:`shared.runs.attempts` (claim, begin the attempt, checkpoints, finish), so a worker
that dies mid-run leaves the run in a state the recovery sweep understands. Here live the
parts that are about running user code: the task's :class:`~reprise.context.TaskContext`,
the heartbeat thread, and interrupting the task when its run is canceled or exceeds its
``maxDuration``.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from reprise.context import AttemptInfo, RunInfo, TaskContext
from reprise.registry import Registry, TaskDefinition
from reprise_server.shared.db import Autocommit, autocommit, transaction
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.flow import admission
from reprise_server.shared.packets.service import run_payload
from reprise_server.shared.payloads import STORE, UnstorableValue, unstorable
from reprise_server.shared.runs import attempts
from reprise_server.shared.runs import repository as runs_repo
from reprise_server.shared.runs.attempts import (
    AttemptResult,
    Failed,
    Interrupted,
    Outcome,
    Succeeded,
    Suspended,
)
from reprise_server.shared.runs.models import Attempt, Run
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.states import RunStatus
from reprise_server.shared.settings import get_settings
from reprise_server.workers import logcapture
from reprise_server.workers.durable import (
    DurableExecution,
    NonDeterminism,
    RunSuspended,
)
from reprise_server.workers.durable import error_of as _error_of
from reprise_server.workers.transient import is_transient

log = logging.getLogger("reprise.execution")

T = TypeVar("T")
U = TypeVar("U")


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


class Heartbeat:
    """One run's heartbeat: keeps ``heartbeat_at`` fresh and interrupts the task when its
    run is canceled or exceeds ``maxDuration``. Beaten by the process's one heartbeat
    thread (:class:`Heartbeats`), not a thread per run: starting a thread was a tenth of a
    run's CPU in the worker pool, and its start a wait on every run."""

    def __init__(
        self, run_id: str, worker: str, task_thread: int, max_duration: float | None,
        interval: float,
    ) -> None:
        self.run_id = run_id
        self.worker = worker
        self.task_thread = task_thread
        now = time.monotonic()
        self.deadline = now + max_duration if max_duration else None
        self.next_beat = now + interval
        self.interrupted: type[RunInterrupted] | None = None
        self.interval = interval
        self._armed = True
        self._lock = threading.Lock()

    def start(self) -> None:
        _heartbeats().add(self)

    def due_at(self) -> float:
        return self.next_beat if self.deadline is None else min(self.next_beat, self.deadline)

    def beat(self) -> bool:
        """One beat (on the heartbeat thread); False once the run needs no more beats."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self._interrupt(RunTimedOut)
            return False
        self.next_beat = time.monotonic() + self.interval
        try:
            with transaction() as session:
                alive = attempts.record_heartbeat(session, self.run_id, self.worker)
        except Exception:
            log.warning("heartbeat failed for %s", self.run_id, exc_info=True)
            return True
        if not alive:
            self._interrupt(RunCanceled)
            return False
        return True

    def _interrupt(self, exc: type[RunInterrupted]) -> None:
        with self._lock:
            if not self._armed:
                return
            self._armed = False
            self.interrupted = exc
            _raise_in_thread(self.task_thread, exc)

    def disarm(self) -> None:
        """The task function has returned: never interrupt it again, but keep beating
        while its outcome is written (so the run does not look abandoned meanwhile)."""
        with self._lock:
            self._armed = False

    def stop(self) -> None:
        self.disarm()
        _heartbeats().remove(self)

    def join(self, timeout: float | None = None) -> None:
        """Until a beat of this run in progress is over (none starts after :meth:`stop`)."""
        _heartbeats().wait_idle(self, timeout)


class Heartbeats(threading.Thread):
    """The process's heartbeat thread: beats every executing run when its beat is due.

    Beats are one after another: a beat stuck on the database (an outage) delays the
    others, and the ``maxDuration`` interrupts, by as long as it is stuck. Every beat then
    fails alike, and a run's stale heartbeat is what lets another worker reclaim it, so the
    cost is that delay, not a wrong outcome."""

    def __init__(self) -> None:
        super().__init__(name="reprise-heartbeats", daemon=True)
        # Started inside a run, the thread must not count as one of that run's threads
        # (its warnings are the worker's, not the run's log: workers/logcapture.py).
        self.__dict__["_reprise_capture"] = None
        self._beats: set[Heartbeat] = set()
        self._beating: Heartbeat | None = None
        self._changed = threading.Condition()
        # When the sleeping thread wakes up next (0 while it is awake: it looks at every
        # beat before it sleeps again). A run's first beat is an interval away, later than
        # that almost always: starting a run then wakes nobody, a thread switch per run
        # saved.
        self._wake_at = 0.0

    def add(self, heartbeat: Heartbeat) -> None:
        with self._changed:
            self._beats.add(heartbeat)
            if heartbeat.due_at() < self._wake_at:
                self._changed.notify()

    def remove(self, heartbeat: Heartbeat) -> None:
        with self._changed:
            self._beats.discard(heartbeat)

    def wait_idle(self, heartbeat: Heartbeat, timeout: float | None) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._beating is not heartbeat, timeout)

    def run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [b for b in self._beats if b.due_at() <= now]
                if not due:
                    wake = min((b.due_at() for b in self._beats), default=now + 60)
                    self._wake_at = wake
                    self._changed.wait(max(wake - now, 0.001))
                    self._wake_at = 0.0
                    continue
            for heartbeat in due:
                with self._changed:
                    if heartbeat not in self._beats:
                        continue  # stopped meanwhile
                    self._beating = heartbeat
                try:
                    more = heartbeat.beat()
                finally:
                    with self._changed:
                        self._beating = None
                        if not more:
                            self._beats.discard(heartbeat)
                        self._changed.notify_all()


_HEARTBEATS: tuple[int, Heartbeats] | None = None
_HEARTBEATS_LOCK = threading.Lock()


def _heartbeats() -> Heartbeats:
    """This process's heartbeat thread (started on first use; a forked pool child starts
    its own)."""
    global _HEARTBEATS
    current = _HEARTBEATS
    if current is not None and current[0] == os.getpid():
        return current[1]
    with _HEARTBEATS_LOCK:
        if _HEARTBEATS is None or _HEARTBEATS[0] != os.getpid():
            thread = Heartbeats()
            thread.start()
            _HEARTBEATS = (os.getpid(), thread)
        return _HEARTBEATS[1]


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
        _durable=DurableExecution(run, attempt.number, _in_transaction),
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
            resume_count=run.resume_count,
            **_resumed_from(run),
        ),
        attempt=AttemptInfo(id=attempt.id, number=attempt.number),
        metadata=dict(run.metadata_ or {}),
        _checkpoint=save_checkpoint,
        _trigger=trigger_child,
    )


def _resumed_from(run: Run) -> dict[str, Any]:
    """The ``ctx.run`` fields of a replay that does not start from the top: the checkpoint
    or step it resumes from, and the original run's payload."""
    start = run.resumed_from
    if not start:
        return {}
    original_id = run.replayed_from

    def original(session: Session) -> Any:
        source = runs_repo.get_run(session, None, original_id) if original_id else None
        return None if source is None else run_payload(session, source)

    return {
        "resumed_from_checkpoint": start.get("checkpoint"),
        "resumed_from_step": start.get("step"),
        "original_payload": _in_transaction(original, "load original payload"),
    }


def _in_transaction(
    step: Callable[[U], T], what: str,
    unit: Callable[[], AbstractContextManager[U]] = transaction,  # type: ignore[assignment]
) -> T:
    """Run ``step`` in a transaction (or another ``unit`` of work), retrying transient
    database errors (a restart, a dropped connection) with backoff for up to
    ``worker_db_retry_seconds``: a worker that has claimed a run or finished its function
    must not drop that work on a blip."""
    deadline = time.monotonic() + get_settings().worker_db_retry_seconds
    delay = 0.05
    while True:
        try:
            with unit() as session:
                return step(session)
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unavailable (%s); retrying in %.2fs",
                        what, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _call(fn: Callable[[Any, TaskContext], Any], run: Run, ctx: TaskContext,
          heartbeat: Heartbeat) -> AttemptResult:
    if run.payload_type != STORE:
        return _call_with(fn, run.payload, ctx, heartbeat)
    try:
        # An offloaded payload (application/store) is read from its packet first.
        payload = _in_transaction(lambda session: run_payload(session, run), "load payload")
    except RepriseError as exc:
        heartbeat.disarm()
        return Failed({"message": exc.message, "name": type(exc).__name__})
    return _call_with(fn, payload, ctx, heartbeat)


def _call_with(fn: Callable[[Any, TaskContext], Any], payload: Any, ctx: TaskContext,
               heartbeat: Heartbeat) -> AttemptResult:
    """Call the task function under ``heartbeat``; what it returned, raised, or why it
    was interrupted."""
    result: AttemptResult
    try:
        try:
            value = fn(payload, ctx)
            if inspect.isawaitable(value):  # an `async def` task: run it on a loop of its own
                value = asyncio.run(_awaited(value))
        finally:
            heartbeat.disarm()
        # Postgres refuses NaN, Infinity and lone surrogates in JSON: storing such an output
        # would fail the completion with a database error, so the attempt fails, naming it.
        problem = unstorable(value, "output")
        result = Succeeded(value) if problem is None else Failed(
            {"message": problem, "name": UnstorableValue.__name__}
        )
    except RunSuspended as exc:
        result = Suspended(exc.entry)
    except NonDeterminism as exc:
        result = Failed(_error_of(exc.error), final=True)
    except RunInterrupted as exc:
        result = Interrupted("timed_out" if isinstance(exc, RunTimedOut) else "canceled")
    except Exception as exc:
        result = Failed(_error_of(exc))
    # A task that turned the interrupt into an error of its own was still interrupted.
    if isinstance(result, Failed) and heartbeat.interrupted is not None:
        result = Interrupted("timed_out" if heartbeat.interrupted is RunTimedOut else "canceled")
    return result


def execute_run(
    run_id: str, registry: Registry, worker: str, version: str,
    taker: admission.Taker | None = None,
) -> Outcome:
    """Execute one attempt of a run, end to end. Safe to call twice for the same run.

    Claiming the run and starting its attempt commit together, before the task's code
    runs: a database error there propagates and the Celery task keeps its message by
    retrying; once the attempt has started, each step retries transient errors itself.
    The common case of each end (a queued run's first attempt; a completion that writes
    nothing but the run and its attempt) is one statement in autocommit
    (:func:`shared.db.autocommit`); anything else takes a transaction.

    ``taker``: when the finishing transaction frees a concurrency slot and admits a run
    bound for the caller's queue, that run is handed to ``taker`` instead of published
    (the caller executes it next, in the slot this run freed: ``workers.handoff``).
    """
    definition: TaskDefinition | None = None

    def claim_first_attempt(unit: Autocommit) -> tuple[Run, Attempt, str] | None:
        nonlocal definition
        started = attempts.claim_and_begin(unit, run_id, worker, version, registry.ids())
        if started is None:  # nothing written: the long way
            return None
        definition = registry.get(started[0].task_identifier)
        environment_id = started[0].environment_id
        slug = attempts.known_environment_slug(environment_id)
        if slug is None:  # once per environment and process
            slug = _in_transaction(
                lambda session: attempts.environment_slug(session, environment_id),
                "read the environment",
            )
        return (*started, slug)

    def claim_and_start(session: Session) -> tuple[Run, Attempt, str] | Outcome:
        nonlocal definition
        claimed = attempts.claim_run(session, run_id, worker)
        if isinstance(claimed, Outcome):
            return claimed
        definition = registry.get(claimed.task_identifier)
        if definition is None:
            return attempts.hand_back_missing_task(session, claimed)
        locked_elsewhere = attempts.hand_back_locked(session, claimed, version)
        if locked_elsewhere is not None:
            return locked_elsewhere
        started = attempts.begin_attempt(session, run_id, worker, version)
        if started is None:  # pragma: no cover - the claim is ours until this commits
            return Outcome(run_id, "lost", "claim lost before start")
        return (*started, attempts.environment_slug(session, claimed.environment_id))

    with autocommit() as unit:
        first = claim_first_attempt(unit)
    if first is not None:
        started: tuple[Run, Attempt, str] | Outcome = first
    else:
        with transaction() as session:
            started = claim_and_start(session)
    if isinstance(started, Outcome):
        return started
    assert definition is not None
    run, attempt, environment = started
    heartbeat = Heartbeat(
        run.id, worker, threading.get_ident(), run.max_duration_seconds,
        get_settings().worker_heartbeat_seconds,
    )
    heartbeat.start()
    try:
        began = time.monotonic()
        # What the task logs and prints is captured, and all of it written before the
        # outcome is (docs/tasks.md#logs).
        with logcapture.capturing(run.id, run.environment_id, attempt.number):
            result = _call(definition, run, _context(run, attempt, environment), heartbeat)
            elapsed_ms = int((time.monotonic() - began) * 1000)
        if isinstance(result, Succeeded) and attempts.completes_alone(run) and _in_transaction(
            lambda unit: attempts.complete_alone(
                unit, run, worker, attempt.number, elapsed_ms, result
            ),
            "complete attempt", unit=autocommit,
        ):
            return Outcome(run.id, RunStatus.COMPLETED)

        def finish(session: Session) -> Outcome:
            if taker is not None:
                admission.offer_to(session, taker)
            return attempts.finish_attempt(
                session, run, worker, attempt.number, elapsed_ms, result
            )

        return _in_transaction(finish, "finish attempt")
    finally:
        heartbeat.stop()
        heartbeat.join(timeout=1)
