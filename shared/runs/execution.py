"""Executing a run on a worker: claim, attempt, heartbeat, finish, retry (§9).

Each step is its own short transaction, so a worker that dies mid-run leaves the run in a
state the recovery sweep understands (DEQUEUED/EXECUTING with a stale heartbeat).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_

from reprise.context import AttemptInfo, RunInfo, TaskContext
from reprise.registry import Registry
from shared import broker
from shared.db import on_commit, transaction
from shared.ids import new_attempt_id
from shared.projects import repository as projects_repo
from shared.runs import repository as repo
from shared.runs.models import Attempt, Checkpoint, Run
from shared.runs.states import RunStatus
from shared.settings import get_settings
from shared.ttl import service as ttl

log = logging.getLogger("reprise.execution")

S = RunStatus


class RunInterrupted(BaseException):
    """Raised inside a task's thread when its run was canceled or hit maxDuration.

    A BaseException so that a task's ``except Exception`` cannot swallow it.
    """

    def __init__(self, reason: str = "canceled") -> None:
        super().__init__(reason)
        self.reason = reason


class RunTimedOut(RunInterrupted):
    def __init__(self) -> None:
        super().__init__("timed_out")


class RunCanceled(RunInterrupted):
    def __init__(self) -> None:
        super().__init__("canceled")


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    """Interrupt a thread at its next bytecode (works in thread pools; blocking C calls
    such as a long ``time.sleep`` finish first)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str
    detail: str = ""


def _backoff_seconds(attempt_number: int) -> float:
    settings = get_settings()
    return float(
        min(settings.retry_backoff_base_seconds * (2 ** (attempt_number - 1)),
            settings.retry_backoff_max_seconds)
    )


def _error_of(exc: BaseException) -> dict[str, Any]:
    return {
        "message": str(exc) or type(exc).__name__,
        "name": type(exc).__name__,
        "stackTrace": "".join(traceback.format_exception(exc))[-8000:],
    }


def _claim(run_id: str, worker: str) -> tuple[Run | None, str]:
    """QUEUED/RETRYING -> DEQUEUED by compare-and-set, expiring a run whose TTL passed.

    A DEQUEUED/EXECUTING run whose heartbeat is stale (its worker died) is reclaimed; a
    live one is left alone, so a run never executes twice at the same time.
    """
    stale = timedelta(seconds=get_settings().stale_run_seconds)
    with transaction() as session:
        if ttl.expire_if_stale(session, run_id) is not None:
            return None, "expired"
        claim_values = {
            "dequeued_at": func.coalesce(Run.dequeued_at, func.now()),
            "heartbeat_at": func.now(),
            "locked_by": worker,
        }
        run = repo.transition(
            session,
            run_id,
            S.DEQUEUED,
            sources={S.QUEUED, S.RETRYING, S.EXECUTING},
            where=[
                or_(
                    Run.status != S.EXECUTING.value,
                    Run.heartbeat_at < func.now() - stale,
                )
            ],
            values=claim_values,
        )
        if run is None:
            # A DEQUEUED run whose worker died before it started executing.
            run = repo.transition(
                session,
                run_id,
                S.QUEUED,
                sources={S.DEQUEUED},
                where=[Run.heartbeat_at < func.now() - stale],
            )
            if run is not None:
                run = repo.transition(session, run_id, S.DEQUEUED, values=claim_values)
        if run is None:
            current = repo.get_run(session, None, run_id)
            return None, current.status if current else "missing"
        # Reclaimed from a dead worker: its open attempt crashed.
        repo.fail_open_attempts(
            session, run_id, {"message": "Worker stopped responding", "name": "WorkerLost"}
        )
        if run.attempt_count >= run.max_attempts:
            repo.transition(
                session, run_id, S.CRASHED,
                values={"finished_at": func.now(),
                        "error": {"message": "Worker stopped responding on the last attempt",
                                  "name": "WorkerLost"}},
            )
            return None, S.CRASHED.value
        return run, "claimed"


def _begin_attempt(run_id: str, worker: str, version: str) -> tuple[Run, Attempt] | None:
    with transaction() as session:
        run = repo.transition(
            session,
            run_id,
            S.EXECUTING,
            where=[Run.locked_by == worker],
            values={
                "attempt_count": Run.attempt_count + 1,
                "started_at": func.coalesce(Run.started_at, func.now()),
                "heartbeat_at": func.now(),
                "version": version,
            },
        )
        if run is None:
            return None
        attempt = repo.insert_attempt(
            session,
            Attempt(
                id=new_attempt_id(),
                run_id=run_id,
                number=run.attempt_count,
                status="EXECUTING",
                worker=worker,
                started_at=func.now(),
            ),
        )
        return run, attempt


class Heartbeat(threading.Thread):
    """Keeps ``heartbeat_at`` fresh and interrupts the task when its run is canceled
    or exceeds ``maxDuration``."""

    def __init__(self, run_id: str, worker: str, task_thread: int, max_duration: float | None):
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.run_id = run_id
        self.worker = worker
        self.task_thread = task_thread
        self.deadline = time.monotonic() + max_duration if max_duration else None
        self.stopped = threading.Event()
        self.interrupted: str | None = None
        self.interval = get_settings().worker_heartbeat_seconds

    def run(self) -> None:
        while not self.stopped.wait(self._next_wait()):
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._interrupt("timed_out", RunTimedOut)
                return
            try:
                with transaction() as session:
                    alive = repo.touch(
                        session,
                        self.run_id,
                        where=[Run.status == S.EXECUTING.value, Run.locked_by == self.worker],
                        heartbeat_at=func.now(),
                    )
            except Exception:
                log.warning("heartbeat failed for %s", self.run_id, exc_info=True)
                continue
            if not alive:
                self._interrupt("canceled", RunCanceled)
                return

    def _next_wait(self) -> float:
        if self.deadline is None:
            return self.interval
        return max(0.0, min(self.interval, self.deadline - time.monotonic()))

    def _interrupt(self, reason: str, exc: type[BaseException]) -> None:
        if self.stopped.is_set():
            return
        self.interrupted = reason
        _raise_in_thread(self.task_thread, exc)

    def stop(self) -> None:
        self.stopped.set()


def _checkpoint_saver(run_id: str, attempt_number: int) -> Callable[[Any], int]:
    def save(state: Any) -> int:
        with transaction() as session:
            repo.lock_run(session, run_id)
            number = repo.next_checkpoint_number(session, run_id)
            repo.insert_checkpoint(
                session,
                Checkpoint(run_id=run_id, number=number, state=state, attempt_number=attempt_number),
            )
        return number

    return save


def _child_trigger(run: Run) -> Callable[[str, Any, dict[str, Any]], str]:
    def trigger_child(task_id: str, payload: Any, options: dict[str, Any]) -> str:
        from shared.runs.schemas import TriggerOptions
        from shared.runs.service import NewRun, create_run

        with transaction() as session:
            child = create_run(
                session,
                run.project_id,
                run.environment_id,
                NewRun(
                    task_identifier=task_id,
                    payload=payload,
                    payload_type="application/json",
                    options=TriggerOptions.model_validate(options),
                    trigger_function="trigger",
                    triggered_by="task",
                    depth=run.depth + 1,
                    parent_run_id=run.id,
                    root_run_id=run.root_run_id or run.id,
                ),
            )
            return child.id

    return trigger_child


def execute_run(run_id: str, registry: Registry, worker: str, version: str) -> Outcome:
    """Execute one attempt of a run, end to end. Safe to call twice for the same run."""
    run, why = _claim(run_id, worker)
    if run is None:
        return Outcome(run_id, why, "not claimed")

    definition = registry.get(run.task_identifier)
    if definition is None:
        return _hand_back_missing_task(run)

    started = _begin_attempt(run_id, worker, version)
    if started is None:
        return Outcome(run_id, "lost", "claim lost before start")
    run, attempt = started
    with transaction() as session:
        env = projects_repo.get_environment_by_id(session, run.environment_id)
    ctx = TaskContext(
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
            environment=env.slug if env else "",
        ),
        attempt=AttemptInfo(id=attempt.id, number=attempt.number),
        metadata=dict(run.metadata_ or {}),
        _checkpoint=_checkpoint_saver(run.id, attempt.number),
        _trigger=_child_trigger(run),
    )
    heartbeat = Heartbeat(run_id, worker, threading.get_ident(), run.max_duration_seconds)
    heartbeat.start()
    began = time.monotonic()
    output: Any = None
    failure: BaseException | None = None
    try:
        try:
            output = definition(run.payload, ctx)
        finally:
            heartbeat.stop()
    except RunInterrupted as exc:
        failure = exc
    except Exception as exc:
        failure = exc
    except BaseException:  # pragma: no cover - KeyboardInterrupt/SystemExit: stop the thread
        heartbeat.join(timeout=1)
        raise
    heartbeat.join(timeout=1)
    elapsed_ms = int((time.monotonic() - began) * 1000)
    return _finish(run, attempt.number, elapsed_ms, output, failure, heartbeat.interrupted)


def _hand_back_missing_task(run: Run) -> Outcome:
    """This worker lacks the task: requeue if the current version has it, else wait for one."""
    with transaction() as session:
        current = projects_repo.current_version_with_task(
            session, run.environment_id, run.task_identifier
        )
        if current is not None:
            repo.transition(session, run.id, S.QUEUED, sources={S.DEQUEUED})
            on_commit(session, lambda: broker.dispatch_run(run.id, countdown=1.0))
            return Outcome(run.id, "requeued", "task not in this worker")
        repo.transition(session, run.id, S.QUEUED, sources={S.DEQUEUED})
        repo.transition(session, run.id, S.PENDING_VERSION, sources={S.QUEUED})
        return Outcome(run.id, S.PENDING_VERSION.value, "no version has the task")


def _finish(
    run: Run,
    attempt_number: int,
    elapsed_ms: int,
    output: Any,
    failure: BaseException | None,
    interrupted: str | None,
) -> Outcome:
    settings = get_settings()
    cost = {
        "duration_ms": Run.duration_ms + elapsed_ms,
        "cost_in_cents": Run.cost_in_cents + elapsed_ms * settings.cost_per_ms_in_cents,
        "base_cost_in_cents": settings.base_cost_in_cents,
        "heartbeat_at": None,
    }
    with transaction() as session:
        if failure is None:
            done = repo.transition(
                session, run.id, S.COMPLETED,
                values={**cost, "output": output, "output_type": "application/json",
                        "finished_at": func.now()},
            )
            if done is not None:
                repo.finish_attempt(session, run.id, attempt_number, "COMPLETED", None)
                return Outcome(run.id, S.COMPLETED.value)
            return _already_settled(session, run, attempt_number, cost)

        if interrupted == "canceled" or isinstance(failure, RunCanceled):
            return _already_settled(session, run, attempt_number, cost)

        error = _error_of(failure)
        if interrupted == "timed_out" or isinstance(failure, RunTimedOut):
            error = {
                "message": f"Run exceeded its maxDuration of {run.max_duration_seconds}s",
                "name": "MaxDurationExceededError",
            }
            ended = repo.transition(
                session, run.id, S.TIMED_OUT, values={**cost, "error": error, "finished_at": func.now()}
            )
            repo.finish_attempt(session, run.id, attempt_number, "FAILED", error)
            return Outcome(run.id, S.TIMED_OUT.value if ended else "settled")

        repo.finish_attempt(session, run.id, attempt_number, "FAILED", error)
        if attempt_number < run.max_attempts:
            delay = _backoff_seconds(attempt_number)
            retrying = repo.transition(
                session, run.id, S.RETRYING,
                values={**cost, "error": error, "dispatched_at": func.now(),
                        "next_attempt_at": func.now() + timedelta(seconds=delay)},
            )
            if retrying is not None:
                on_commit(session, lambda: broker.dispatch_run(run.id, countdown=delay))
                return Outcome(run.id, S.RETRYING.value, f"retry in {delay:.2f}s")
            return _already_settled(session, run, attempt_number, cost)
        failed = repo.transition(
            session, run.id, S.FAILED, values={**cost, "error": error, "finished_at": func.now()}
        )
        return Outcome(run.id, S.FAILED.value if failed else "settled")


def _already_settled(session: Any, run: Run, attempt_number: int, cost: dict[str, Any]) -> Outcome:
    """The run was moved on by someone else (canceled while executing): record the cost."""
    repo.touch(session, run.id, **{k: v for k, v in cost.items() if k != "heartbeat_at"})
    repo.finish_attempt(session, run.id, attempt_number, "CANCELED", None)
    current = repo.get_run(session, None, run.id)
    return Outcome(run.id, current.status if current else "missing", "settled elsewhere")
