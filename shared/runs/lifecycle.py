"""Every move of a run, by name, each owning the columns it writes.

The state machine (:mod:`shared.runs.states`) says which moves are allowed; this module
says what each one writes and publishes. It is the only caller of the compare-and-set
(:mod:`shared.runs.cas`): call sites name the move (``promote``, ``claim``, ``complete`` …),
they never assemble the columns. The effects written once here:
docs/architecture.md#run-moves.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Interval,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import update

from reprise_server.shared import broker
from reprise_server.shared.db import Autocommit, on_commit, on_commit_batched
from reprise_server.shared.durable import waits
from reprise_server.shared.flow import admission
from reprise_server.shared.flow.models import Queue
from reprise_server.shared.runs import attempts_repository as attempts_repo
from reprise_server.shared.runs import cas
from reprise_server.shared.runs import repository as repo
from reprise_server.shared.runs.models import Attempt, Run
from reprise_server.shared.runs.states import AttemptStatus, RunStatus
from reprise_server.shared.settings import get_settings
from reprise_server.shared.timers.arming import arm_if_within_horizon

EXPIRED_MESSAGE = "Run expired because the TTL was reached"

# Only a run that never left its queue expires: once a worker has taken it, it runs (and
# retries) to the end. The TTL sweep's candidate queries use the same condition.
EXPIRABLE: tuple[ColumnElement[bool], ...] = (
    Run.ttl_expires_at <= func.now(),
    Run.dequeued_at.is_(None),
)


def _queue_entry(ttl_seconds: Any) -> dict[str, Any]:
    """What entering the queue writes, on one clock: the database's ``now()``."""
    return {
        "queued_at": func.now(),
        "dispatched_at": func.now(),
        "ttl_expires_at": func.now() + ttl_seconds * text("interval '1 second'"),
    }


def _enters_queue() -> dict[str, Any]:
    """A move into the queue: ``queued_at`` and the TTL clock the first time only."""
    entry = _queue_entry(Run.ttl_seconds)
    return {
        "queued_at": func.coalesce(Run.queued_at, entry["queued_at"]),
        "dispatched_at": entry["dispatched_at"],
        "ttl_expires_at": func.coalesce(Run.ttl_expires_at, entry["ttl_expires_at"]),
    }


# A run inserted QUEUED enters its queue in the INSERT itself (no round trip more).
_INSERT_QUEUED = repo.run_insert(_queue_entry(bindparam("entry_ttl_seconds", type_=Integer)))


def _next_token() -> dict[str, Any]:
    return {"schedule_token": Run.schedule_token + 1}


def _finished() -> dict[str, Any]:
    return {"finished_at": func.now()}


def _usage_of(elapsed_ms: int) -> dict[str, Any]:
    """The figures an attempt that ran for ``elapsed_ms`` adds to the run (its usage: duration and cost)."""
    settings = get_settings()
    return {
        "elapsed_ms": elapsed_ms,
        "cost": elapsed_ms * settings.cost_per_ms_in_cents,
        "base_cost": settings.base_cost_in_cents,
    }


def _usage_columns(elapsed_ms: Any, cost: Any, base_cost: Any) -> dict[str, Any]:
    """What those figures write (values, or bind parameters of a prepared move)."""
    return {
        "duration_ms": Run.duration_ms + elapsed_ms,
        "cost_in_cents": Run.cost_in_cents + cost,
        "base_cost_in_cents": base_cost,
    }


def _usage(elapsed_ms: int) -> dict[str, Any]:
    return _usage_columns(**_usage_of(elapsed_ms))


def _attempt_ended(elapsed_ms: int) -> dict[str, Any]:
    return {**_usage(elapsed_ms), "heartbeat_at": None}


def _dispatch_after_commit(session: Session, run: Run, countdown: float | None = None) -> None:
    on_commit_batched(session, broker.dispatch_executions, (run.id, run.queue, countdown))


# --- creation and the queue ---------------------------------------------------------------


def insert(session: Session, run: Run) -> Run:
    """Insert a new run in its first status — QUEUED (published after commit, or held back
    as its ``admission`` says: in its limits' line, or in a paused queue), DELAYED
    (a timer armed if it is due within the horizon) or PENDING_VERSION — with the columns
    that status owns (entering the queue on the database clock, as every move does)."""
    if run.status is RunStatus.QUEUED:
        repo.insert_run(session, run, _INSERT_QUEUED, entry_ttl_seconds=run.ttl_seconds or None)
    else:
        if run.status is RunStatus.DELAYED:
            run.schedule_token = 1
        repo.insert_run(session, run)
    _inserted(session, run)
    return run


# The same, reading the run's creation context in the INSERT (:func:`insert_in_context`).
_INSERT_QUEUED_IN_CONTEXT = repo.run_insert_in_context(
    _queue_entry(bindparam("entry_ttl_seconds", type_=Integer))
)
_INSERT_IN_CONTEXT = repo.run_insert_in_context({})


def insert_in_context(session: Session, run: Run, guard: dict[str, Any]) -> bool:
    """:func:`insert`, QUEUED or PENDING_VERSION, in one statement with the read of the
    run's creation context, if that context is still the one of ``guard`` (the one its
    values were computed from). False when nothing was inserted: the context changed, or
    one of its keys is taken; the caller reads the context and inserts with :func:`insert`."""
    if run.status is RunStatus.QUEUED:
        inserted = repo.insert_run_in_context(
            session, run, _INSERT_QUEUED_IN_CONTEXT, guard,
            entry_ttl_seconds=run.ttl_seconds or None,
        )
    elif run.status is RunStatus.PENDING_VERSION:
        inserted = repo.insert_run_in_context(session, run, _INSERT_IN_CONTEXT, guard)
    else:
        raise ValueError(f"a {run.status} run is inserted by insert(), after its clock read")
    if inserted:
        _inserted(session, run)
    return inserted


def _inserted(session: Session, run: Run) -> None:
    if run.status is RunStatus.QUEUED:
        if run.admission is None:
            _dispatch_after_commit(session, run)
        elif run.admission == admission.WAITING:
            admission.enter(session, [run.id])
    elif run.status is RunStatus.DELAYED:
        arm_if_within_horizon(session, run.id, run.schedule_token, run.delayed_until,
                              run.created_at)


def release_pending_version(
    session: Session, environment_id: str, task_identifiers: Collection[str], limit: int
) -> list[str]:
    """PENDING_VERSION -> QUEUED for up to ``limit`` of the environment's runs of these
    tasks (a version that has them registered), in one statement: they enter their queue
    and are published after commit. Returns the ids released; fewer than ``limit`` means
    none is left that another transaction is not moving."""
    return _release(
        session, repo.pending_version_candidates(environment_id, task_identifiers, limit)
    )


def release_missed_pending_version(session: Session, limit: int) -> list[str]:
    """PENDING_VERSION -> QUEUED for up to ``limit`` runs whose environment's current
    version has their task: the sweep's backstop for a run inserted while that version
    was being registered, which the registration's own release did not see."""
    return _release(session, repo.releasable_pending_version_candidates(limit))


def _release(session: Session, candidates: Select[Any]) -> list[str]:
    batch = cas.transition_many(
        session, RunStatus.QUEUED, candidates,
        sources={RunStatus.PENDING_VERSION}, progress=Run.created_at,
        values={**_enters_queue(), "concurrency_limits": _DECLARED_LIMITS},
    )
    _enter_queue(session, batch)
    return batch.run_ids


def _children_ended(session: Session, waitpoint_ids: list[str]) -> None:
    waits.child_ended(session, waitpoint_ids, resume)


# A child's end completes its parent's waitpoint in the move that ends it.
cas.ON_CHILDREN_ENDED.append(_children_ended)


def _enter_queue(session: Session, batch: cas.BatchTransition) -> None:
    """Runs that just entered their queue: published after commit, unless held back (a
    paused queue, or concurrency limits to clear first)."""
    if not batch.run_ids:
        return
    open_runs = _hold_back(session, batch)
    if open_runs:
        on_commit(session, lambda: broker.dispatch_runs(open_runs))


def _hold_back(session: Session, batch: cas.BatchTransition) -> list[tuple[str, str | None]]:
    """Mark the runs of ``batch`` that may not be published yet (their queue is paused:
    ``paused``; they hold limits: ``waiting``, entering the line at commit); returns the
    others, to publish."""
    paused = _paused_queues(session, set(batch.environments)) if batch.run_ids else set()
    parked, waiting, open_runs = [], [], []
    for run_id, queue, task, environment_id, limited in zip(
        batch.run_ids, batch.queues, batch.tasks, batch.environments, batch.limited, strict=True
    ):
        if (environment_id, admission.queue_key(queue, task)) in paused:
            parked.append(run_id)
        elif limited:
            waiting.append(run_id)
        else:
            open_runs.append((run_id, queue))
    for state, ids in ((admission.PAUSED, parked), (admission.WAITING, waiting)):
        if ids:
            session.connection().execute(
                update(Run).where(Run.id == any_(bindparam("ids", type_=ARRAY(Text()))))
                .values(admission=state), {"ids": ids},
            )
    admission.enter(session, waiting)
    return open_runs


def _paused_queues(session: Session, environment_ids: Collection[str]) -> set[tuple[str, str]]:
    rows = session.execute(
        select(Queue.environment_id, Queue.name).where(
            Queue.environment_id.in_(list(environment_ids)), Queue.paused
        )
    )
    return {(environment_id, name) for environment_id, name in rows}


# The limits a run released from PENDING_VERSION holds, now that a version has its task:
# those the newest such version declares for it, its named ones replaced by those its
# trigger named (kept in ``concurrency_limits`` while it waited; ``concurrency_override``
# says that it named some, even none: ``concurrency: []`` keeps only the task's own).
_DECLARED_LIMITS = literal_column(
    """(SELECT nullif(array(
            SELECT DISTINCT name FROM (
                SELECT x AS name FROM jsonb_array_elements_text(d.limits) AS x
                WHERE (runs.concurrency_limits IS NULL AND runs.concurrency_override IS NULL)
                   OR x LIKE 'task/%'
                UNION SELECT unnest(runs.concurrency_limits)
            ) AS names ORDER BY name), '{}')
        FROM (SELECT vt.options -> 'concurrency_limits' AS limits
              FROM version_tasks vt JOIN worker_versions wv ON wv.id = vt.worker_version_id
              WHERE wv.environment_id = runs.environment_id
                AND vt.task_identifier = runs.task_identifier
              ORDER BY wv.registered_at DESC LIMIT 1) AS d)""",
    ARRAY(Text()),
)


def redispatch_lost(session: Session, limit: int = 1000) -> int:
    """Republish, at the head of their queue, runs whose execution message is lost: queued
    or retrying runs not dispatched for ``redispatch_after_seconds``, and claimed runs
    whose heartbeat is older than ``stale_run_seconds`` (their worker died), in both cases
    only once the message of their last dispatch is gone — no longer in their queue (a run
    queue is FIFO: the run was dispatched before its queue's oldest message was published,
    or the queue is empty) and not held by a worker that received it within that window.
    A busy queue cannot postpone this (its oldest message keeps getting younger), and one
    recovery message waiting behind a backlog is not republished again.

    Execution is idempotent, so a run republished while a copy of its message survives
    (a worker's reserved message not counted, say) is claimed once and the copy is a
    no-op. See docs/architecture.md#faults-cost-their-length."""
    settings = get_settings()
    quiet = timedelta(seconds=settings.redispatch_after_seconds)
    stale = timedelta(seconds=settings.stale_run_seconds)
    evidence = broker.run_queue_evidence(repo.queues_of_lost_dispatches(session, quiet, stale))
    oldest = repo.dispatched_at_of(
        session, [e.oldest_run for e in evidence.values() if e.known and e.oldest_run]
    )
    candidates = repo.lock_lost_dispatches(
        session, quiet, stale, limit=limit,
        taken_before={queue: _taken_before(e, oldest.get(e.oldest_run or ""))
                      for queue, e in evidence.items() if e.known},
    )
    candidates = [
        c for c in candidates if c.run_id not in evidence.get(c.queue, broker.UNKNOWN).at_head
    ]
    held = broker.runs_in_flight([c.run_id for c in candidates])
    now = time.time()
    lost = [
        (c.run_id, c.queue)
        for c in candidates
        if held.get(c.run_id, 0.0) < now - (quiet if c.waiting else stale).total_seconds()
    ]
    if lost:
        repo.mark_redispatched(session, [run_id for run_id, _ in lost])
        on_commit(session, lambda: broker.dispatch_runs(lost, head=True))
    return len(lost)


def _taken_before(
    evidence: broker.QueueEvidence, oldest_dispatched: datetime | None
) -> datetime | None:
    """Runs dispatched before this have had their message taken from the queue (None:
    the queue holds no message published at its tail).

    Before the oldest message's publish, less a margin for the time from a dispatch to
    its publish; and not after that message's own dispatch: the runs dispatched in the
    same transaction share its time, however long the transaction took before it
    published them all (a batch of hundreds under load), and their messages are behind it."""
    if evidence.oldest_published is None:
        return None
    published = evidence.oldest_published - broker.PUBLISH_MARGIN_SECONDS
    taken = datetime.fromtimestamp(published, tz=UTC)
    return taken if oldest_dispatched is None else min(taken, oldest_dispatched)


# --- delays -------------------------------------------------------------------------------


def promote(session: Session, run_id: str, token: int) -> Run | None:
    """DELAYED -> QUEUED by a timer: only if ``token`` is still the run's schedule token
    and the run is due by the database clock (stale, duplicate and early timers: None).
    A run another transaction holds is not waited for (None): the holder is changing it (a
    sweep promoting it, a reschedule, a cancel), and the sweep promotes it if that one
    rolls back. So a timer never holds a control thread behind a lock."""
    promoted = cas.transition(
        session, run_id, RunStatus.QUEUED, sources={RunStatus.DELAYED},
        where=[Run.schedule_token == token, Run.delayed_until <= func.now()],
        values={**_enters_queue(), **_next_token()}, skip_locked=True,
    )
    if promoted is not None:
        _enter_queue(session, cas.BatchTransition(
            [promoted.id], None, [], [promoted.queue], [promoted.task_identifier],
            [promoted.environment_id], [promoted.concurrency_limits is not None],
        ))
    return promoted


def promote_due(session: Session, candidates: Select[Any]) -> cas.BatchTransition:
    """DELAYED -> QUEUED for the runs ``candidates`` selects (the sweep's overdue runs);
    ``progress`` holds each one's due time (the promotion lateness metric)."""
    batch = cas.transition_many(
        session, RunStatus.QUEUED, candidates, sources={RunStatus.DELAYED},
        progress=Run.delayed_until, each_progress=True,
        values={**_enters_queue(), **_next_token()},
    )
    _enter_queue(session, batch)
    return batch


_RESCHEDULE_AT = cas.prepare_transition(
    RunStatus.DELAYED,
    sources={RunStatus.DELAYED},
    values={"delayed_until": bindparam("b_due"), **_next_token()},
)
# A duration counts from the move itself: ``clock_timestamp()`` is read by this UPDATE,
# which runs with the row lock held, not ``now()`` (the transaction's start, before any
# wait for that lock). So of two reschedules of one run by the same duration, the one that
# takes the lock later always gets the later time.
_RESCHEDULE_AFTER = cas.prepare_transition(
    RunStatus.DELAYED,
    sources={RunStatus.DELAYED},
    values={
        "delayed_until": func.clock_timestamp() + bindparam("b_after", type_=Interval()),
        **_next_token(),
    },
)


def reschedule(
    session: Session, run_id: str, due: datetime | timedelta, now: datetime
) -> Run | None:
    """DELAYED -> DELAYED (re-armed); None if the run is not DELAYED.

    ``due`` is a time, or a duration counted from the moment the run moves (on the
    database clock, under the row lock; ``now`` then plays no part).
    """
    if isinstance(due, timedelta):
        moved = _RESCHEDULE_AFTER(session, run_id, b_after=due)
        if moved is not None and moved.delayed_until is not None:
            moved_at = moved.delayed_until - due
            arm_if_within_horizon(
                session, run_id, moved.schedule_token, moved.delayed_until, moved_at
            )
        return moved
    moved = _RESCHEDULE_AT(session, run_id, b_due=due)
    if moved is not None:
        arm_if_within_horizon(session, run_id, moved.schedule_token, due, now)
    return moved


# --- ends that are not an attempt's -------------------------------------------------------


def cancel(session: Session, run_id: str) -> Run | None:
    """Any unfinished run -> CANCELED (an executing one is stopped by its worker's next
    heartbeat); None if it had already finished."""
    canceled = cas.transition(
        session, run_id, RunStatus.CANCELED, values={**_finished(), **_next_token()}
    )
    if canceled is not None:
        attempts_repo.cancel_open_attempts(session, run_id)
    return canceled


def _expiry() -> dict[str, Any]:
    return {
        "expired_at": func.now(),
        "error": {"message": EXPIRED_MESSAGE},
        **_finished(),
        **_next_token(),
    }


def expire(session: Session, run_id: str) -> Run | None:
    """QUEUED -> EXPIRED if its TTL passed and it was never dequeued (a worker's claim)."""
    return cas.transition(
        session, run_id, RunStatus.EXPIRED, sources={RunStatus.QUEUED}, where=EXPIRABLE,
        values=_expiry(),
    )


def expire_due(session: Session, candidates: Select[Any]) -> cas.BatchTransition:
    """QUEUED -> EXPIRED for the runs ``candidates`` selects (the TTL sweep); ``last`` is
    the latest expiry time among them."""
    return cas.transition_many(
        session, RunStatus.EXPIRED, candidates, sources={RunStatus.QUEUED},
        progress=Run.ttl_expires_at, values=_expiry(),
    )


# --- execution ----------------------------------------------------------------------------


# A queued run a worker may still take: dequeued before (its TTL no longer applies) or
# its TTL not passed yet (a run past it is for :func:`expire`).
_WITHIN_TTL = or_(
    Run.dequeued_at.is_not(None), ~func.coalesce(Run.ttl_expires_at <= func.now(), False)
)

# The queue a run waits in (its named queue, or its task's own ``task/<id>``) is not paused.
_QUEUE_OPEN = ~exists().where(
    Queue.environment_id == Run.environment_id,
    Queue.name == func.coalesce(Run.queue, literal("task/") + Run.task_identifier),
    Queue.paused,
)
# A queued or retrying run a worker may start: not held back (``admission``: waiting for a
# slot, parked in a paused queue, in a limited retry's backoff), its queue not paused.
_RELEASED = and_(Run.admission.is_(None), _QUEUE_OPEN)

# The moves every run makes, prepared once (the hot path: see cas.prepare_transition).
_CLAIM = cas.prepare_transition(
    RunStatus.DEQUEUED,
    sources={RunStatus.QUEUED, RunStatus.RETRYING, RunStatus.DEQUEUED, RunStatus.EXECUTING},
    where=[
        or_(
            and_(cas.status_in({RunStatus.QUEUED, RunStatus.RETRYING}), _WITHIN_TTL, _RELEASED),
            # Only a claimed run is abandoned: a queued one keeps the heartbeat of an
            # earlier claim (handed back, parked for a version) and may be held back.
            and_(cas.status_in({RunStatus.DEQUEUED, RunStatus.EXECUTING}),
                 repo.abandoned(bindparam("stale", type_=Interval()))),
        )
    ],
    values={
        "dequeued_at": func.coalesce(Run.dequeued_at, func.now()),
        "heartbeat_at": func.now(),
        "locked_by": bindparam("worker"),
    },
)


def claim(session: Session, run_id: str, worker: str, stale: timedelta) -> Run | None:
    """-> DEQUEUED for ``worker``: a queued or retrying run (not one whose TTL already
    passed: that one is for :func:`expire`), or an abandoned one (its worker went silent
    for ``stale``). A live claim is never taken over, so a run never executes twice at the
    same time."""
    return _CLAIM(session, run_id, worker=worker, stale=stale)


def hand_back(session: Session, run_id: str, countdown: float) -> Run | None:
    """DEQUEUED -> QUEUED: the worker that took the run lacks its task; another worker
    (on the current version) gets it after ``countdown`` seconds."""
    queued = cas.transition(
        session, run_id, RunStatus.QUEUED, sources={RunStatus.DEQUEUED},
        values={"dispatched_at": func.now()},
    )
    if queued is not None:
        _dispatch_after_commit(session, queued, countdown)
    return queued


def park_pending_version(session: Session, run_id: str) -> Run | None:
    """DEQUEUED -> PENDING_VERSION: no version of the environment has the run's task yet."""
    return cas.transition(
        session, run_id, RunStatus.PENDING_VERSION, sources={RunStatus.DEQUEUED}
    )


_START = cas.prepare_transition(
    RunStatus.EXECUTING,
    sources={RunStatus.DEQUEUED},
    where=[Run.locked_by == bindparam("worker")],
    values={
        "attempt_count": Run.attempt_count + 1,
        "started_at": func.coalesce(Run.started_at, func.now()),
        "heartbeat_at": func.now(),
        "version": bindparam("b_version"),
    },
)


def start(session: Session, run_id: str, worker: str, version: str) -> Run | None:
    """DEQUEUED -> EXECUTING, by the worker holding the claim: a new attempt begins."""
    return _START(session, run_id, worker=worker, b_version=version)


# The claim and the start of a first attempt in one move, for what the common case needs
# and nothing else: a QUEUED run never attempted (no attempt left open to fail), whose TTL
# has not passed, whose task the worker has, and not locked to another version. Any other
# run goes the long way (claim, then the checks, then start), so the guarantees are those
# of the two moves: one row version and one statement fewer per run.
def _first_attempt(moved: Any) -> dict[str, Any]:
    """The attempt a claim-and-start opens, from the moved run (its id a bind parameter)."""
    return {
        "id": bindparam("attempt_id"),
        "run_id": moved.c.id,
        "number": moved.c.attempt_count,
        "status": literal(AttemptStatus.EXECUTING.value),
        "worker": bindparam("worker"),
        "started_at": moved.c.heartbeat_at,
    }


_CLAIM_AND_START = cas.prepare_transition_opening(
    RunStatus.EXECUTING,
    cast(Table, Attempt.__table__),
    _first_attempt,
    sources={RunStatus.QUEUED},
    where=[
        Run.attempt_count == 0,
        _WITHIN_TTL,
        _RELEASED,
        Run.task_identifier == any_(bindparam("tasks", type_=ARRAY(Text()))),
        or_(Run.locked_version.is_(None), Run.locked_version == bindparam("b_version")),
    ],
    values={
        "dequeued_at": func.coalesce(Run.dequeued_at, func.now()),
        "heartbeat_at": func.now(),
        "locked_by": bindparam("worker"),
        "attempt_count": Run.attempt_count + 1,
        "started_at": func.coalesce(Run.started_at, func.now()),
        "version": bindparam("b_version"),
    },
)


def claim_and_start(
    session: Session | Autocommit, run_id: str, worker: str, version: str, tasks: list[str],
    attempt_id: str,
) -> Run | None:
    """QUEUED -> EXECUTING for ``worker`` (of ``version``, having ``tasks``): a run's first
    attempt begins, its attempt row (``attempt_id``) inserted by the same statement (which
    may commit on its own: an :class:`~shared.db.Autocommit` unit); None when the run needs
    the long way (:func:`claim`, :func:`start`)."""
    return _CLAIM_AND_START(session, run_id, worker=worker, b_version=version, tasks=tasks,
                            attempt_id=attempt_id)


def heartbeat(session: Session, run_id: str, worker: str) -> bool:
    """Refresh the heartbeat of a run ``worker`` is executing; False once it is not (the
    run was canceled, or another worker reclaimed it)."""
    return cas.touch(
        session, run_id,
        where=[Run.status == RunStatus.EXECUTING, Run.locked_by == worker],
        heartbeat_at=func.now(),
    )


def crash(session: Session, run_id: str, error: dict[str, Any]) -> Run | None:
    """-> CRASHED: its worker died on the last attempt it had."""
    return cas.transition(
        session, run_id, RunStatus.CRASHED, values={**_finished(), "error": error}
    )


def _held_by(worker: str) -> list[ColumnElement[bool]]:
    # An attempt's end is written only by the worker that holds the run: if another one
    # reclaimed it meanwhile, this worker's late write must not end that execution.
    return [Run.locked_by == worker]


# What a completion writes (a prepared move's bind parameters: worker, output, usage).
_COMPLETED: dict[str, Any] = {
    **_usage_columns(bindparam("elapsed_ms"), bindparam("cost"), bindparam("base_cost")),
    "heartbeat_at": None,
    **_finished(),
    "output": bindparam("b_output", type_=Run.__table__.c.output.type),
    "output_type": "application/json",
}

_COMPLETE_ATTEMPT = cas.prepare_move_closing(
    RunStatus.COMPLETED,
    attempts_repo.closing_open_attempt(AttemptStatus.COMPLETED, cas.CLOSING_RUN),
    where=[Run.locked_by == bindparam("b_worker")],
    values=_COMPLETED,
)


def complete_attempt(
    session: Session, run_id: str, worker: str, attempt_number: int, output: Any,
    elapsed_ms: int,
) -> tuple[bool, bool]:
    """The attempt ``attempt_number`` COMPLETED and the run EXECUTING -> COMPLETED, in one
    statement: ``(attempt closed, run moved)``. The run moves only if its attempt was
    still open and ``worker`` still holds it."""
    return _COMPLETE_ATTEMPT(
        session, run_id, b_worker=worker, b_attempt=attempt_number, b_output=output,
        **_usage_of(elapsed_ms),
    )


# The same completion by a statement that writes both rows or neither, for a run whose
# completion writes nothing else: it holds no concurrency slot and no parent waits on it.
_COMPLETE_ALONE = cas.prepare_move_closing(
    RunStatus.COMPLETED,
    attempts_repo.closing_open_attempt(AttemptStatus.COMPLETED, cas.CLOSING_RUN),
    run_first=True,
    where=[
        Run.locked_by == bindparam("b_worker"),
        Run.concurrency_limits.is_(None),
        Run.waitpoint_id.is_(None),
        attempts_repo.attempt_open(cas.CLOSING_RUN),
    ],
    values=_COMPLETED,
)


def complete_alone(
    session: Session | Autocommit, run_id: str, worker: str, attempt_number: int,
    output: Any, elapsed_ms: int,
) -> bool:
    """EXECUTING -> COMPLETED with its attempt ``attempt_number`` closed, in one statement
    that writes nothing else (it may commit on its own: an :class:`~shared.db.Autocommit`
    unit), for a run that holds no concurrency slot and whose end no parent waits for.
    False: nothing was written (the run was moved on, its attempt closed, or it is not such
    a run); take :func:`complete_attempt` in a transaction."""
    _, completed = _COMPLETE_ALONE(
        session, run_id, b_worker=worker, b_attempt=attempt_number, b_output=output,
        **_usage_of(elapsed_ms),
    )
    return completed


def fail(
    session: Session, run_id: str, worker: str, error: dict[str, Any], elapsed_ms: int
) -> Run | None:
    return cas.transition(
        session, run_id, RunStatus.FAILED, where=_held_by(worker),
        values={**_attempt_ended(elapsed_ms), **_finished(), "error": error},
    )


def time_out(
    session: Session, run_id: str, worker: str, error: dict[str, Any], elapsed_ms: int
) -> Run | None:
    return cas.transition(
        session, run_id, RunStatus.TIMED_OUT, where=_held_by(worker),
        values={**_attempt_ended(elapsed_ms), **_finished(), "error": error},
    )


def retry(
    session: Session, run_id: str, worker: str, error: dict[str, Any], elapsed_ms: int,
    delay: float,
) -> Run | None:
    """EXECUTING -> RETRYING: the attempt failed and another one starts in ``delay``
    seconds (published after commit with that countdown)."""
    retrying = cas.transition(
        session, run_id, RunStatus.RETRYING, where=_held_by(worker),
        values={**_attempt_ended(elapsed_ms), "error": error, "dispatched_at": func.now(),
                "next_attempt_at": func.now() + timedelta(seconds=delay),
                # A limited run gives its slots back for the backoff (the move releases
                # them) and enters the line again when the delivery below arrives.
                "admission": case((Run.concurrency_limits.is_not(None), admission.BACKOFF))},
    )
    if retrying is not None:
        _dispatch_after_commit(session, retrying, delay)
    return retrying


# --- durable waits ------------------------------------------------------------------------


def suspend(session: Session, run_id: str, worker: str, elapsed_ms: int) -> bool:
    """EXECUTING -> WAITING by the worker holding the run: its function unwound at a durable
    wait. The move gives its concurrency slots back; no worker slot is held meanwhile."""
    return cas.transition(
        session, run_id, RunStatus.WAITING, where=_held_by(worker),
        values=_attempt_ended(elapsed_ms),
    ) is not None


def resume(session: Session, run_ids: Collection[str]) -> list[str]:
    """WAITING -> QUEUED: what these runs waited for is over. They enter their queue like
    any run (published after commit, or held back by a paused queue or their limits); the
    execution that follows is a resume, not a retry (``resume_count``)."""
    if not run_ids:
        return []
    batch = cas.transition_many(
        session, RunStatus.QUEUED, select(Run.id).where(Run.id.in_(list(run_ids))),
        sources={RunStatus.WAITING}, progress=Run.created_at,
        values={**_enters_queue(), "resume_count": Run.resume_count + 1},
    )
    _enter_queue(session, batch)
    return batch.run_ids


# --- flow control -------------------------------------------------------------------------


_PAUSED_QUEUE = ~_QUEUE_OPEN


def park_in_paused_queue(session: Session, run_id: str) -> bool:
    """A queued or retrying run delivered while its queue is paused: held back
    (``admission = 'paused'``, its slots given back) until the queue resumes."""
    row = session.connection().execute(
        update(Run)
        .where(Run.id == run_id, Run.status.in_([RunStatus.QUEUED, RunStatus.RETRYING]),
               Run.admission.is_(None), _PAUSED_QUEUE)
        .values(admission=admission.PAUSED, updated_at=func.now())
        .returning(Run.concurrency_limits.is_not(None))
    ).first()
    if row is not None and row[0]:
        admission.release(session, [run_id])
    return row is not None


def end_backoff(session: Session, run_id: str) -> str | None:
    """A limited run's retry delivered (its countdown, the backoff, is over): it enters its
    limits' line (or, its queue paused, waits for the queue). Returns where it went (None:
    it was not in a backoff)."""
    row = session.connection().execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.RETRYING,
               Run.admission == admission.BACKOFF)
        .values(admission=case((_PAUSED_QUEUE, admission.PAUSED), else_=admission.WAITING),
                updated_at=func.now())
        .returning(Run.admission)
    ).first()
    if row is None:
        return None
    if row[0] == admission.WAITING:
        admission.enter(session, [run_id])
    return str(row[0])


def resume_parked(session: Session, environment_id: str, queue: str, limit: int) -> int:
    """Runs parked in ``queue`` (resumed) go back to it, best-ranked first: published
    after commit, or into their limits' line. Returns how many (fewer than ``limit``:
    none is left)."""
    key = func.coalesce(Run.queue, literal("task/") + Run.task_identifier)
    chosen = session.execute(
        select(Run.id).where(Run.environment_id == environment_id,
                             Run.admission == admission.PAUSED, key == queue)
        .order_by(Run.queued_at - func.make_interval(0, 0, 0, 0, 0, 0, Run.priority), Run.id)
        .limit(limit).with_for_update(skip_locked=True)
    ).scalars().all()
    if not chosen:
        return 0
    rows = session.connection().execute(
        update(Run).where(Run.id == any_(bindparam("ids", type_=ARRAY(Text()))))
        .values(admission=case((Run.concurrency_limits.is_not(None), admission.WAITING)),
                dispatched_at=func.now(), updated_at=func.now())
        .returning(Run.id, Run.queue, Run.admission), {"ids": list(chosen)},
    ).all()
    order = {run_id: i for i, run_id in enumerate(chosen)}
    rows = sorted(rows, key=lambda row: order[row[0]])
    admission.enter(session, [r[0] for r in rows if r[2] == admission.WAITING])
    open_runs = [(r[0], r[1]) for r in rows if r[2] is None]
    if open_runs:
        on_commit(session, lambda: broker.dispatch_runs(open_runs))
    return len(chosen)


def attempt_stopped(session: Session, run_id: str, worker: str) -> None:
    """The function of a run canceled while ``worker`` executed it has stopped: the run
    gives its concurrency slots back now (it kept them from the cancel until then, so the
    next run in line never overlaps it; shared.flow.admission)."""
    row = session.connection().execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.CANCELED, Run.locked_by == worker,
               Run.heartbeat_at.is_not(None))
        .values(heartbeat_at=None)
        .returning(Run.concurrency_limits.is_not(None))
    ).first()
    if row is not None and row[0]:
        admission.release(session, [run_id])


def record_usage(session: Session, run_id: str, elapsed_ms: int) -> None:
    """An attempt of a run someone else already ended (canceled while executing): it
    still ran for ``elapsed_ms``."""
    cas.touch(session, run_id, **_usage(elapsed_ms))
