"""The steps of executing a run, each taking the caller's session and never committing.

A worker (:mod:`workers.execution`) runs each step in its own short transaction, so a
worker that dies mid-run leaves the run in a state the recovery sweep understands
(DEQUEUED/EXECUTING with a stale heartbeat). Nothing here runs user code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from reprise_server.shared.db import Autocommit, db_now
from reprise_server.shared.durable import service as durable
from reprise_server.shared.flow import admission
from reprise_server.shared.ids import new_attempt_id
from reprise_server.shared.payloads import JSON, reject_unstorable
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects import repository as projects_repo
from reprise_server.shared.runs import attempts_repository as attempts_repo
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs import repository as repo
from reprise_server.shared.runs.models import Attempt, Checkpoint, Run
from reprise_server.shared.runs.options import RunOptions
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import NewRun, create_run
from reprise_server.shared.runs.states import EXECUTING_LIKE, AttemptStatus, RunStatus
from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.execution")

WORKER_LOST = {"message": "Worker stopped responding", "name": "WorkerLost"}
WORKER_LOST_ON_LAST_ATTEMPT = {
    "message": "Worker stopped responding on the last attempt",
    "name": "WorkerLost",
}


@dataclass(frozen=True)
class Outcome:
    """Where one delivery of a run left it: a status, or why nothing was done."""

    run_id: str
    status: str
    detail: str = ""
    # Set when another worker holds the run with a fresh heartbeat: seconds until that
    # heartbeat goes stale (when the run may be reclaimed if that worker died).
    held_for: float | None = None
    queue: str | None = None
    # Who holds it, and in which attempt (``<worker>#<attempt>``): a watch of a lost
    # execution ends once the run is in another attempt or another worker's hands.
    holder: str | None = None
    # Set only when this delivery ended the run in failure (FAILED, TIMED_OUT, CRASHED):
    # the run's error, ``Name: message``. The execution task then fails in Celery too.
    error: str | None = None


def _error_line(error: dict[str, Any] | None) -> str:
    error = error or {}
    name, message = str(error.get("name") or "Error"), str(error.get("message") or "")
    return f"{name}: {message}" if message else name


@dataclass(frozen=True)
class Succeeded:
    output: Any


@dataclass(frozen=True)
class Failed:
    error: dict[str, Any]
    # Not retried whatever attempts remain (the same code would fail the same way: a
    # non-determinism error).
    final: bool = False


@dataclass(frozen=True)
class Interrupted:
    """The worker stopped the task: the run was canceled, or exceeded its maxDuration."""

    reason: Literal["canceled", "timed_out"]


@dataclass(frozen=True)
class Suspended:
    """The task reached a durable wait that is not over: its function unwound, and the
    run waits (``entry``: the recorded wait, shared.durable.service)."""

    entry: Any


AttemptResult = Succeeded | Failed | Interrupted | Suspended


def backoff_seconds(attempt_number: int) -> float:
    """Retry backoff: base * 2^(attempt-1), capped (docs/architecture.md#decisions)."""
    settings = get_settings()
    return float(
        min(settings.retry_backoff_base_seconds * (2 ** (attempt_number - 1)),
            settings.retry_backoff_max_seconds)
    )


def claim_run(session: Session, run_id: str, worker: str) -> Run | Outcome:
    """Take the run for ``worker`` (-> DEQUEUED), or say why not.

    A run whose TTL passed is expired instead; a run reclaimed from a dead worker has its
    open attempt failed, and crashes if that was its last attempt.
    """
    stale = timedelta(seconds=get_settings().stale_run_seconds)
    run = lifecycle.claim(session, run_id, worker, stale)
    if run is None:
        if lifecycle.expire(session, run_id) is not None:
            return Outcome(run_id, "expired", "not claimed")
        current = repo.get_run(session, None, run_id)
        if current is None:
            return Outcome(run_id, "missing", "not claimed")
        if current.status in (RunStatus.QUEUED, RunStatus.RETRYING):
            held_back = _held_back(session, current)
            if held_back is not None:
                return Outcome(run_id, current.status, held_back, queue=current.queue)
        held_for = None
        if current.status in EXECUTING_LIKE and current.heartbeat_at is not None:
            age = db_now(session) - current.heartbeat_at
            held_for = max((stale - age).total_seconds(), 0.0)
        holder = f"{current.locked_by}#{current.attempt_count}"
        return Outcome(run_id, current.status, "not claimed", held_for, current.queue, holder)
    if run.attempt_count:  # a retry, or a reclaim: an attempt may have been left open
        attempts_repo.fail_open_attempts(session, run_id, WORKER_LOST)
        if run.attempt_count - run.resume_count >= run.max_attempts:
            lifecycle.crash(session, run_id, WORKER_LOST_ON_LAST_ATTEMPT)
            return Outcome(run_id, RunStatus.CRASHED, "not claimed",
                           error=_error_line(WORKER_LOST_ON_LAST_ATTEMPT))
    return run


def _held_back(session: Session, run: Run) -> str | None:
    """Why a queued or retrying run the claim did not take may not start (None: another
    reason). Its delivery does what flow control asks: a limited retry whose backoff is
    over enters its limits' line; a run delivered while its queue is paused is parked."""
    if run.admission == admission.BACKOFF:
        went = lifecycle.end_backoff(session, run.id)
        return f"backoff over: {went}" if went else "in its retry backoff"
    if run.admission is not None:
        return f"held back: {run.admission}"
    if lifecycle.park_in_paused_queue(session, run.id):
        return "queue paused: parked"
    return None


def hand_back_missing_task(session: Session, run: Run) -> Outcome:
    """The claiming worker lacks the task: requeue if the current version has it (another
    worker runs it), else wait in PENDING_VERSION for a version that has it."""
    current = catalogue.current_version_with_task(
        session, run.environment_id, run.task_identifier
    )
    if current is not None:
        lifecycle.hand_back(session, run.id, countdown=1.0)
        return Outcome(run.id, "requeued", "task not in this worker")
    lifecycle.park_pending_version(session, run.id)
    return Outcome(run.id, RunStatus.PENDING_VERSION, "no version has the task")


def hand_back_locked(session: Session, run: Run, version: str) -> Outcome | None:
    """A run locked to another version than the claiming worker's goes back to its queue
    for a worker of that version (Trigger.dev runs a locked run only on its version)."""
    if not run.locked_version or run.locked_version == version:
        return None
    lifecycle.hand_back(session, run.id, countdown=2.0)
    return Outcome(run.id, "requeued", f"locked to version {run.locked_version}")


def claim_and_begin(
    unit: Session | Autocommit, run_id: str, worker: str, version: str, tasks: list[str]
) -> tuple[Run, Attempt] | None:
    """The common case of :func:`claim_run` then :func:`begin_attempt` in one move (which
    may commit on its own: an :class:`~shared.db.Autocommit` unit): a queued run's first
    attempt, by a worker that has its task; None for any other run (nothing was written:
    take the long way)."""
    attempt_id = new_attempt_id()
    run = lifecycle.claim_and_start(unit, run_id, worker, version, tasks, attempt_id)
    if run is None:
        return None
    # The statement that started the run inserted this attempt.
    return run, Attempt(id=attempt_id, run_id=run.id, number=run.attempt_count,
                        status=AttemptStatus.EXECUTING, worker=worker,
                        started_at=run.heartbeat_at)


def begin_attempt(
    session: Session, run_id: str, worker: str, version: str
) -> tuple[Run, Attempt] | None:
    """-> EXECUTING with a new attempt; None if the claim was lost meanwhile."""
    run = lifecycle.start(session, run_id, worker, version)
    if run is None:
        return None
    return run, _open_attempt(session, run, worker)


def _open_attempt(session: Session, run: Run, worker: str) -> Attempt:
    return attempts_repo.insert_attempt(
        session,
        Attempt(
            id=new_attempt_id(),
            run_id=run.id,
            number=run.attempt_count,
            status=AttemptStatus.EXECUTING,
            worker=worker,
            started_at=run.heartbeat_at,
        ),
    )


def record_heartbeat(session: Session, run_id: str, worker: str) -> bool:
    """The worker executing the run is alive; False once the run is no longer its to run
    (canceled, or reclaimed by another worker): the task must stop."""
    return lifecycle.heartbeat(session, run_id, worker)


_SLUGS: dict[str, str] = {}


def known_environment_slug(environment_id: str) -> str | None:
    """:func:`environment_slug` if this process has read it already (None: not yet)."""
    return _SLUGS.get(environment_id)


def environment_slug(session: Session, environment_id: str) -> str:
    """The environment's slug (``ctx.run.environment``); an environment never changes it."""
    slug = _SLUGS.get(environment_id)
    if slug is None:
        env = projects_repo.get_environment_by_id(session, environment_id)
        if env is None:
            return ""
        slug = _SLUGS[environment_id] = env.slug
    return slug


def save_checkpoint(session: Session, run_id: str, attempt_number: int, state: Any) -> int:
    """Save ``state`` as the run's next numbered checkpoint; returns its number (400 for a
    state JSON or Postgres cannot carry, naming where)."""
    reject_unstorable(state, "checkpoint state")
    repo.lock_run(session, run_id)  # numbers are allocated one writer at a time
    number = attempts_repo.next_checkpoint_number(session, run_id)
    attempts_repo.insert_checkpoint(
        session,
        Checkpoint(run_id=run_id, number=number, state=state, attempt_number=attempt_number),
    )
    return number


def trigger_child(
    session: Session, parent: Run, task_id: str, payload: Any, options: TriggerOptions,
    waitpoint_id: str | None = None,
) -> str:
    """A child run of ``parent`` (``ctx.trigger`` inside a task; with ``waitpoint_id``,
    ``ctx.trigger_and_wait``: its end completes that waitpoint); returns its id."""
    child = create_run(
        session,
        parent.project_id,
        parent.environment_id,
        NewRun(
            task_identifier=task_id,
            payload=payload,
            payload_type=JSON,
            options=RunOptions.from_trigger(options),
            delay=options.delay,
            triggered_by="task",
            depth=parent.depth + 1,
            parent_run_id=parent.id,
            root_run_id=parent.root_run_id or parent.id,
            waitpoint_id=waitpoint_id,
        ),
    )
    return child.id


def completes_alone(run: Run) -> bool:
    """Whether the run's completion may write nothing but the run and its attempt (it holds
    no concurrency slot, and no parent waits on it): :func:`complete_alone` may end it.
    Asked before a unit of work is opened for it, so that a limited run's completion does
    not take a connection for nothing first."""
    return run.concurrency_limits is None and run.waitpoint_id is None


def complete_alone(
    unit: Autocommit, run: Run, worker: str, attempt_number: int, elapsed_ms: int,
    result: Succeeded,
) -> bool:
    """The common end of an attempt, by one statement that writes nothing else, committed
    on its own: COMPLETED, for a run that holds no concurrency slot and that no parent
    waits on. False: nothing written; end it with :func:`finish_attempt`."""
    if not completes_alone(run):
        return False
    return lifecycle.complete_alone(
        unit, run.id, worker, attempt_number, result.output, elapsed_ms
    )


def finish_attempt(
    session: Session,
    run: Run,
    worker: str,
    attempt_number: int,
    elapsed_ms: int,
    result: AttemptResult,
) -> Outcome:
    """End the attempt: COMPLETED, a retry with backoff while attempts remain, FAILED,
    or TIMED_OUT. A run someone else already moved on (canceled while it executed, or
    reclaimed) only gets the attempt's usage recorded. Safe to repeat after a commit whose
    outcome was unknown (the connection dropped): an attempt already ended is left alone.
    """
    if isinstance(result, Succeeded):
        closed, completed = lifecycle.complete_attempt(
            session, run.id, worker, attempt_number, result.output, elapsed_ms
        )
        if not closed:
            return _already_recorded(session, run, worker)
        if not completed:
            return _settled_elsewhere(session, run, worker, attempt_number, elapsed_ms)
        return Outcome(run.id, RunStatus.COMPLETED)
    if isinstance(result, Suspended):
        if not attempts_repo.finish_attempt(
            session, run.id, attempt_number, AttemptStatus.PAUSED, None
        ):
            return _already_recorded(session, run, worker)
        status = durable.suspend(session, run, worker, elapsed_ms, result.entry)
        if status == "settled":
            return _settled_elsewhere(session, run, worker, attempt_number, elapsed_ms)
        return Outcome(run.id, status, f"waits at {result.entry.name!r}")
    if isinstance(result, Interrupted) and result.reason == "canceled":
        if not attempts_repo.finish_attempt(session, run.id, attempt_number, AttemptStatus.CANCELED, None):
            return _already_recorded(session, run, worker)
        return _settled_elsewhere(session, run, worker, attempt_number, elapsed_ms)
    if isinstance(result, Interrupted):
        error = {
            "message": f"Run exceeded its maxDuration of {run.max_duration_seconds}s",
            "name": "MaxDurationExceededError",
        }
        if not attempts_repo.finish_attempt(session, run.id, attempt_number, AttemptStatus.FAILED, error):
            return _already_recorded(session, run, worker)
        ended = lifecycle.time_out(session, run.id, worker, error, elapsed_ms)
        if not ended:  # canceled meanwhile: the function has stopped, its slots go back
            lifecycle.attempt_stopped(session, run.id, worker)
        if not ended:
            return Outcome(run.id, "settled")
        return Outcome(run.id, RunStatus.TIMED_OUT, error=_error_line(error))

    if not attempts_repo.finish_attempt(
        session, run.id, attempt_number, AttemptStatus.FAILED, result.error
    ):
        return _already_recorded(session, run, worker)
    if not result.final and attempt_number - run.resume_count < run.max_attempts:
        delay = backoff_seconds(attempt_number - run.resume_count)
        durable.forget_failed_steps(session, run.id)
        if lifecycle.retry(session, run.id, worker, result.error, elapsed_ms, delay) is None:
            return _settled_elsewhere(session, run, worker, attempt_number, elapsed_ms)
        return Outcome(run.id, RunStatus.RETRYING, f"retry in {delay:.2f}s")
    failed = lifecycle.fail(session, run.id, worker, result.error, elapsed_ms)
    if not failed:  # canceled meanwhile: the function has stopped, its slots go back
        lifecycle.attempt_stopped(session, run.id, worker)
    if not failed:
        return Outcome(run.id, "settled")
    return Outcome(run.id, RunStatus.FAILED, error=_error_line(result.error))


def _already_recorded(session: Session, run: Run, worker: str) -> Outcome:
    # The attempt was closed by someone else: a cancel while it executed. The function
    # has stopped: the run's slots go back (kept until now: shared.flow.admission).
    lifecycle.attempt_stopped(session, run.id, worker)
    current = repo.get_run(session, None, run.id)
    return Outcome(run.id, current.status if current else "missing", "already recorded")


def _settled_elsewhere(
    session: Session, run: Run, worker: str, attempt_number: int, elapsed_ms: int
) -> Outcome:
    lifecycle.record_usage(session, run.id, elapsed_ms)
    # Canceled while it executed: the function has stopped, its slots go back.
    lifecycle.attempt_stopped(session, run.id, worker)
    attempts_repo.finish_attempt(
        session, run.id, attempt_number, AttemptStatus.CANCELED, None, only_open=False
    )
    current = repo.get_run(session, None, run.id)
    return Outcome(run.id, current.status if current else "missing", "settled elsewhere")
