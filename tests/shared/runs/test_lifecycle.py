"""Each named move of a run (``shared.runs.lifecycle``) against real Postgres: the statuses
it moves from (and the ones it refuses), and the columns it writes.

Runs are set up with a plain UPDATE (the status and the columns a move's guards read), on
a Reprise queue no worker serves, so whatever a move publishes waits there to be counted.
Timestamps a move writes are the database clock of its transaction (``db_now``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from reprise_server.shared.db import autocommit, db_now, discard_after_commit, transaction
from reprise_server.shared.ids import new_attempt_id
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs.models import Attempt, Run
from reprise_server.shared.runs.repository import RUN_COLUMNS
from reprise_server.shared.runs.states import (
    FINAL_STATES,
    AttemptStatus,
    RunStatus,
    can_transition,
)
from reprise_server.shared.settings import get_settings
from reprise_server.shared.versions import repository as versions_repo
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for

S = RunStatus
WORKER = "lifecycle-test@host"
OTHER_WORKER = "someone-else@host"
TOKEN = 5
HOUR = timedelta(hours=1)
_RUNS = Run.__table__


# --- set-up and reading ------------------------------------------------------------------


@dataclass
class Parked:
    """A Reprise queue of the test's own that no worker serves: what a move publishes to a
    run on it stays in its Celery queue (in the real broker) to be counted."""

    name: str

    def messages(self) -> int:
        from reprise_server.shared.broker import broker_client, queue_lengths, run_queue

        settings = get_settings()
        celery_queue = run_queue(settings, self.name)
        return queue_lengths(broker_client(settings.redis_url), [celery_queue])[celery_queue]


@pytest.fixture
def parked(project: ProjectKeys) -> Iterator[Parked]:
    from reprise_server.shared.broker import broker_client, run_queue

    queue = Parked(f"lifecycle-{project.slug}")
    yield queue
    settings = get_settings()
    client = broker_client(settings.redis_url)
    keys = client.keys(run_queue(settings, queue.name) + "*")
    if keys:
        client.delete(*keys)


# The columns of a queue entry, blank unless a test gives them.
NEVER_QUEUED = {"queued_at": None, "dispatched_at": None, "ttl_expires_at": None}


def a_run(project: ProjectKeys, parked: Parked, status: RunStatus, **columns: Any) -> str:
    """A run of ``test-echo`` (TTL 10 minutes, never queued) put in ``status`` with
    ``columns`` written as given (values or SQL expressions); nothing published."""
    run_id = triggers.in_db(project, publish=False, queue=parked.name, ttl="10m")
    values = {**NEVER_QUEUED, **columns}
    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(status=status, **values))
    return run_id


def row(run_id: str) -> Any:
    """Every column of the run as stored (not through the ORM's identity map)."""
    with transaction() as session:
        return session.execute(select(_RUNS).where(_RUNS.c.id == run_id)).one()


def ago(delta: timedelta = HOUR) -> Any:
    return func.now() - delta


def later(delta: timedelta = HOUR) -> Any:
    return func.now() + delta


def database_up_for(window: timedelta) -> None:
    """Wait until the database server has been up for ``window``: an abandoned claim is
    one whose heartbeat stopped that long ago while the database was up (a server that
    just started gives every worker a full window first)."""
    def up() -> bool:
        with transaction() as session:
            return bool(session.execute(
                select(func.pg_postmaster_start_time() < func.now() - window)).scalar_one())

    wait_for(up, timeout=window.total_seconds() + 5, what=f"the database up for {window}")


def move(step: Callable[[Any], Any], *, publish: bool = False) -> tuple[Any, datetime]:
    """Run ``step(session)`` in a transaction of its own; its outcome and the transaction's
    clock. With ``publish=False`` what the move would publish after commit is dropped."""
    with transaction() as session:
        now = db_now(session)
        outcome = step(session)
        if not publish:
            discard_after_commit(session)
    return outcome, now


# --- which statuses each move leaves, and where to ------------------------------------------

# A run ready for every move: held by WORKER, its heartbeat an hour old (abandoned), due
# an hour ago with schedule token TOKEN, no TTL clock running, never attempted.
READY: dict[str, Any] = {
    "locked_by": WORKER,
    "heartbeat_at": ago(),
    "delayed_until": ago(),
    "schedule_token": TOKEN,
    "ttl_expires_at": None,
    "dequeued_at": None,
    "attempt_count": 0,
    "locked_version": None,
}


@dataclass(frozen=True)
class Move:
    target: RunStatus
    sources: frozenset[RunStatus]
    step: Callable[[Any, str], Any]  # (session, run_id) -> truthy if the run moved
    ready: tuple[tuple[str, Any], ...] = ()


def _only(run_id: str) -> Any:
    return select(Run.id).where(Run.id == run_id).limit(1)


ERROR = {"name": "Error", "message": "boom"}


def _with_open_attempt(session: Any, run_id: str) -> bool:
    """Attempt 1 of the run, open (EXECUTING): what a completion closes."""
    session.execute(text(
        "INSERT INTO attempts (id, run_id, number, status, worker) "
        "VALUES (:id, :run, 1, 'EXECUTING', :worker) ON CONFLICT DO NOTHING"),
        {"id": new_attempt_id(), "run": run_id, "worker": WORKER})
    return True
NOT_FINAL = frozenset(RunStatus) - FINAL_STATES

MOVES: dict[str, Move] = {
    "promote": Move(S.QUEUED, frozenset({S.DELAYED}),
                    lambda s, r: lifecycle.promote(s, r, TOKEN)),
    "promote_due": Move(S.QUEUED, frozenset({S.DELAYED}),
                        lambda s, r: lifecycle.promote_due(s, _only(r)).run_ids),
    "reschedule": Move(S.DELAYED, frozenset({S.DELAYED}),
                       lambda s, r: lifecycle.reschedule(s, r, db_now(s) + HOUR, db_now(s))),
    "cancel": Move(S.CANCELED, NOT_FINAL, lifecycle.cancel),
    "expire": Move(S.EXPIRED, frozenset({S.QUEUED}), lifecycle.expire,
                   ready=(("ttl_expires_at", ago()),)),
    "expire_due": Move(S.EXPIRED, frozenset({S.QUEUED}),
                       lambda s, r: lifecycle.expire_due(s, _only(r)).run_ids),
    "claim": Move(S.DEQUEUED, frozenset({S.QUEUED, S.RETRYING, S.DEQUEUED, S.EXECUTING}),
                  lambda s, r: lifecycle.claim(s, r, WORKER, timedelta(milliseconds=1))),
    "hand_back": Move(S.QUEUED, frozenset({S.DEQUEUED}),
                      lambda s, r: lifecycle.hand_back(s, r, 5)),
    "park_pending_version": Move(S.PENDING_VERSION, frozenset({S.DEQUEUED}),
                                 lifecycle.park_pending_version),
    "start": Move(S.EXECUTING, frozenset({S.DEQUEUED}),
                  lambda s, r: lifecycle.start(s, r, WORKER, "v2")),
    "claim_and_start": Move(
        S.EXECUTING, frozenset({S.QUEUED}),
        lambda s, r: lifecycle.claim_and_start(s, r, WORKER, "v2", ["test-echo"], new_attempt_id()),
    ),
    "crash": Move(S.CRASHED, frozenset({S.DEQUEUED, S.EXECUTING, S.RETRYING}),
                  lambda s, r: lifecycle.crash(s, r, ERROR)),
    "fail": Move(S.FAILED, frozenset({S.EXECUTING}),
                 lambda s, r: lifecycle.fail(s, r, WORKER, ERROR, 10)),
    "time_out": Move(S.TIMED_OUT, frozenset({S.EXECUTING}),
                     lambda s, r: lifecycle.time_out(s, r, WORKER, ERROR, 10)),
    "retry": Move(S.RETRYING, frozenset({S.EXECUTING}),
                  lambda s, r: lifecycle.retry(s, r, WORKER, ERROR, 10, 1.0)),
    "complete_attempt": Move(S.COMPLETED, frozenset({S.EXECUTING}),
                             lambda s, r: _with_open_attempt(s, r) and lifecycle.complete_attempt(
                                 s, r, WORKER, 1, {"ok": 1}, 10)[1]),
    "complete_alone": Move(S.COMPLETED, frozenset({S.EXECUTING}),
                           lambda s, r: _with_open_attempt(s, r) and lifecycle.complete_alone(
                               s, r, WORKER, 1, {"ok": 1}, 10)),
    "suspend": Move(S.WAITING, frozenset({S.EXECUTING}),
                    lambda s, r: lifecycle.suspend(s, r, WORKER, 10)),
    "resume": Move(S.QUEUED, frozenset({S.WAITING}), lambda s, r: lifecycle.resume(s, [r])),
}

# Named functions of the lifecycle that move no run between statuses, and the releases of
# PENDING_VERSION runs, which choose their runs themselves: each tested on its own below.
NOT_A_STATUS_MOVE = {"insert", "insert_in_context", "heartbeat", "record_usage", "redispatch_lost"}
# Flow control: held-back runs are parked, enter the line, or resume (tests/shared/flow).
FLOW_CONTROL = {"park_in_paused_queue", "end_backoff", "resume_parked", "attempt_stopped"}
RELEASES = {"release_pending_version", "release_missed_pending_version"}


def test_every_named_move_of_the_lifecycle_is_in_the_table() -> None:
    named = {
        name for name, fn in inspect.getmembers(lifecycle, inspect.isfunction)
        if fn.__module__ == lifecycle.__name__ and not name.startswith("_")
    }
    assert named == set(MOVES) | NOT_A_STATUS_MOVE | RELEASES | FLOW_CONTROL


@pytest.mark.parametrize("name", sorted(MOVES))
def test_a_move_leaves_exactly_its_statuses_along_legal_edges(
    project: ProjectKeys, parked: Parked, name: str
) -> None:
    """From a run in each of the thirteen statuses, ready for the move in every other
    respect: the move happens from its sources only (the others are refused, the row
    untouched), each one an edge of the state machine, and lands in its target."""
    spec = MOVES[name]
    database_up_for(timedelta(milliseconds=1))  # for the claim of an abandoned run
    ready = {**READY, **dict(spec.ready)}
    runs = {status: a_run(project, parked, status, **ready) for status in RunStatus}
    before = {status: row(run_id) for status, run_id in runs.items()}

    with transaction() as session:
        moved = {status for status, run_id in runs.items() if spec.step(session, run_id)}
        discard_after_commit(session)

    assert moved == spec.sources
    for status, run_id in runs.items():
        after = row(run_id)
        if status in moved:
            assert can_transition(status, spec.target), f"{name}: {status} -> {spec.target}"
            assert after.status == spec.target
        else:
            assert after == before[status], f"{name} changed a {status} run it refused"


# --- insert ---------------------------------------------------------------------------------


def _new_run(project: ProjectKeys, parked: Parked, session: Any, status: RunStatus,
             **columns: Any) -> Run:
    from reprise_server.shared.ids import new_run_id

    now = db_now(session)
    return Run(
        id=new_run_id(), project_id=project.project_id,
        environment_id=project.environment_ids["dev"], task_identifier="test-echo",
        status=status, payload={"n": 1}, payload_type="application/json", max_attempts=3,
        ttl_seconds=600, queue=parked.name, created_at=now, updated_at=now, **columns,
    )


def test_insert_queued_enters_the_queue_starts_the_ttl_clock_and_publishes(
    project: ProjectKeys, parked: Parked
) -> None:
    run, now = move(lambda s: lifecycle.insert(s, _new_run(project, parked, s, S.QUEUED)),
                    publish=True)
    stored = row(run.id)
    assert stored.status == S.QUEUED
    assert stored.queued_at == stored.dispatched_at == now
    assert stored.ttl_expires_at == now + timedelta(seconds=600)
    assert (stored.schedule_token, stored.dequeued_at, stored.attempt_count) == (0, None, 0)
    assert parked.messages() == 1


def test_insert_delayed_takes_token_one_and_starts_no_ttl_clock(
    project: ProjectKeys, parked: Parked
) -> None:
    def insert(session: Any) -> Run:
        due = db_now(session) + timedelta(days=30)  # beyond the timer horizon: no timer
        return lifecycle.insert(session, _new_run(project, parked, session, S.DELAYED,
                                                  delayed_until=due))

    run, now = move(insert, publish=True)
    stored = row(run.id)
    assert stored.status == S.DELAYED
    assert stored.schedule_token == 1
    assert stored.delayed_until == now + timedelta(days=30)
    assert (stored.queued_at, stored.dispatched_at, stored.ttl_expires_at) == (None, None, None)
    assert stored.timer_armed_token is None
    assert parked.messages() == 0


def test_insert_delayed_within_the_horizon_arms_its_timer(
    project: ProjectKeys, parked: Parked
) -> None:
    def insert(session: Any) -> Run:
        due = db_now(session) + timedelta(seconds=30)
        return lifecycle.insert(session, _new_run(project, parked, session, S.DELAYED,
                                                  delayed_until=due))

    run, _ = move(insert)
    assert row(run.id).timer_armed_token == 1


def test_insert_pending_version_waits_outside_any_queue(
    project: ProjectKeys, parked: Parked
) -> None:
    run, _ = move(lambda s: lifecycle.insert(s, _new_run(project, parked, s, S.PENDING_VERSION)),
                  publish=True)
    stored = row(run.id)
    assert stored.status == S.PENDING_VERSION
    assert (stored.queued_at, stored.dispatched_at, stored.ttl_expires_at) == (None, None, None)
    assert stored.schedule_token == 0
    assert parked.messages() == 0


# --- delays ---------------------------------------------------------------------------------


def test_promote_queues_a_due_run_bumps_its_token_starts_its_ttl_and_publishes(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.DELAYED, schedule_token=TOKEN, delayed_until=ago())
    promoted, now = move(lambda s: lifecycle.promote(s, run_id, TOKEN), publish=True)
    assert promoted is not None
    stored = row(run_id)
    assert stored.status == S.QUEUED
    assert stored.schedule_token == TOKEN + 1
    assert stored.queued_at == stored.dispatched_at == now
    assert stored.ttl_expires_at == now + timedelta(minutes=10)
    assert parked.messages() == 1


def test_promote_keeps_a_queue_entry_and_ttl_clock_already_started(
    project: ProjectKeys, parked: Parked
) -> None:
    """The TTL clock starts at the first entry into the queue, never again."""
    run_id = a_run(project, parked, S.DELAYED, schedule_token=TOKEN, delayed_until=ago(),
                   queued_at=ago(2 * HOUR), ttl_expires_at=later())
    before = row(run_id)
    _, now = move(lambda s: lifecycle.promote(s, run_id, TOKEN))
    stored = row(run_id)
    assert (stored.queued_at, stored.ttl_expires_at) == (before.queued_at, before.ttl_expires_at)
    assert stored.dispatched_at == now


@pytest.mark.parametrize(
    ("token", "due"),
    [(TOKEN - 1, ago()), (TOKEN + 1, ago()), (TOKEN, later())],
    ids=["stale token", "unknown token", "not due yet"],
)
def test_promote_refuses_a_stale_token_or_an_early_timer(
    project: ProjectKeys, parked: Parked, token: int, due: Any
) -> None:
    run_id = a_run(project, parked, S.DELAYED, schedule_token=TOKEN, delayed_until=due)
    before = row(run_id)
    promoted, _ = move(lambda s: lifecycle.promote(s, run_id, token), publish=True)
    assert promoted is None
    assert row(run_id) == before
    assert parked.messages() == 0


def test_promote_due_queues_the_chosen_runs_and_reports_their_due_times(
    project: ProjectKeys, parked: Parked
) -> None:
    first = a_run(project, parked, S.DELAYED, schedule_token=1, delayed_until=ago(2 * HOUR))
    second = a_run(project, parked, S.DELAYED, schedule_token=1, delayed_until=ago())
    queued = a_run(project, parked, S.QUEUED, delayed_until=ago())
    dues = {run_id: row(run_id).delayed_until for run_id in (first, second)}
    candidates = select(Run.id).where(Run.id.in_([first, second, queued])).limit(10)
    batch, now = move(lambda s: lifecycle.promote_due(s, candidates), publish=True)
    assert sorted(batch.run_ids) == sorted([first, second])
    assert dict(zip(batch.run_ids, batch.progress, strict=True)) == dues
    for run_id in (first, second):
        stored = row(run_id)
        assert (stored.status, stored.schedule_token) == (S.QUEUED, 2)
        assert stored.queued_at == stored.dispatched_at == now
        assert stored.ttl_expires_at == now + timedelta(minutes=10)
    assert row(queued).status == S.QUEUED
    assert parked.messages() == 2


def test_reschedule_moves_the_due_time_and_the_token(project: ProjectKeys, parked: Parked) -> None:
    run_id = a_run(project, parked, S.DELAYED, schedule_token=TOKEN, delayed_until=later())

    def reschedule(session: Any) -> Any:
        now = db_now(session)
        return lifecycle.reschedule(session, run_id, now + 2 * HOUR, now)

    moved, now = move(reschedule)
    assert moved is not None
    stored = row(run_id)
    assert (stored.status, stored.schedule_token) == (S.DELAYED, TOKEN + 1)
    assert stored.delayed_until == now + 2 * HOUR
    assert stored.queued_at is None


# --- ends that are not an attempt's ---------------------------------------------------------


def test_cancel_finishes_the_run_bumps_its_token_and_cancels_its_open_attempt(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.EXECUTING, locked_by=WORKER, schedule_token=TOKEN)
    with transaction() as session:
        session.execute(
            text("INSERT INTO attempts (id, run_id, number, status, worker) "
                 "VALUES (:id, :run, 1, 'EXECUTING', :worker)"),
            {"id": f"attempt_{run_id}", "run": run_id, "worker": WORKER},
        )
    canceled, now = move(lambda s: lifecycle.cancel(s, run_id))
    assert canceled is not None
    stored = row(run_id)
    assert (stored.status, stored.finished_at, stored.schedule_token) == (
        S.CANCELED, now, TOKEN + 1)
    with transaction() as session:
        attempt = session.execute(
            text("SELECT status, completed_at FROM attempts WHERE run_id = :run"), {"run": run_id}
        ).one()
    assert tuple(attempt) == ("CANCELED", now)


def test_expire_ends_a_never_dequeued_run_past_its_ttl(project: ProjectKeys, parked: Parked) -> None:
    run_id = a_run(project, parked, S.QUEUED, ttl_expires_at=ago(timedelta(seconds=1)),
                   schedule_token=TOKEN)
    expired, now = move(lambda s: lifecycle.expire(s, run_id))
    assert expired is not None
    stored = row(run_id)
    assert stored.status == S.EXPIRED
    assert stored.expired_at == stored.finished_at == now
    assert stored.error == {"message": lifecycle.EXPIRED_MESSAGE}
    assert stored.schedule_token == TOKEN + 1


@pytest.mark.parametrize(
    "columns",
    [
        {"ttl_expires_at": later()},
        {"ttl_expires_at": None},
        {"ttl_expires_at": ago(), "dequeued_at": ago()},
    ],
    ids=["ttl not passed", "no ttl", "dequeued before"],
)
def test_expire_refuses_a_run_within_its_ttl_or_once_dequeued(
    project: ProjectKeys, parked: Parked, columns: dict[str, Any]
) -> None:
    run_id = a_run(project, parked, S.QUEUED, **columns)
    before = row(run_id)
    assert move(lambda s: lifecycle.expire(s, run_id))[0] is None
    assert row(run_id) == before


def test_expire_due_ends_the_chosen_runs_and_reports_the_latest_expiry(
    project: ProjectKeys, parked: Parked
) -> None:
    first = a_run(project, parked, S.QUEUED, ttl_expires_at=ago(2 * HOUR))
    second = a_run(project, parked, S.QUEUED, ttl_expires_at=ago())
    latest = row(second).ttl_expires_at
    candidates = select(Run.id).where(Run.id.in_([first, second])).limit(10)
    batch, now = move(lambda s: lifecycle.expire_due(s, candidates))
    assert sorted(batch.run_ids) == sorted([first, second])
    assert batch.last == latest
    for run_id in (first, second):
        stored = row(run_id)
        assert stored.status == S.EXPIRED
        assert stored.expired_at == stored.finished_at == now
        assert stored.error == {"message": lifecycle.EXPIRED_MESSAGE}


# --- the queue and execution ----------------------------------------------------------------


def test_claim_takes_a_queued_run_for_its_worker(project: ProjectKeys, parked: Parked) -> None:
    run_id = a_run(project, parked, S.QUEUED, locked_by=None, heartbeat_at=None)
    claimed, now = move(lambda s: lifecycle.claim(s, run_id, WORKER, timedelta(seconds=30)))
    assert claimed is not None
    stored = row(run_id)
    assert stored.status == S.DEQUEUED
    assert (stored.locked_by, stored.dequeued_at, stored.heartbeat_at) == (WORKER, now, now)
    assert (stored.attempt_count, stored.started_at) == (0, None)


def test_claim_takes_over_an_abandoned_run_but_keeps_its_first_dequeue(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.EXECUTING, locked_by=OTHER_WORKER, heartbeat_at=ago(),
                   dequeued_at=ago(2 * HOUR), attempt_count=1)
    first_dequeue = row(run_id).dequeued_at
    database_up_for(timedelta(seconds=1))
    claimed, now = move(lambda s: lifecycle.claim(s, run_id, WORKER, timedelta(seconds=1)))
    assert claimed is not None
    stored = row(run_id)
    assert (stored.status, stored.locked_by, stored.heartbeat_at) == (S.DEQUEUED, WORKER, now)
    assert stored.dequeued_at == first_dequeue
    assert stored.attempt_count == 1


@pytest.mark.parametrize(
    ("status", "columns"),
    [
        (S.EXECUTING, {"locked_by": OTHER_WORKER, "heartbeat_at": func.now()}),
        (S.DEQUEUED, {"locked_by": OTHER_WORKER, "heartbeat_at": func.now()}),
        (S.QUEUED, {"ttl_expires_at": ago(timedelta(seconds=1))}),
    ],
    ids=["live execution", "live claim", "queued past its ttl"],
)
def test_claim_refuses_a_live_claim_and_a_run_past_its_ttl(
    project: ProjectKeys, parked: Parked, status: RunStatus, columns: dict[str, Any]
) -> None:
    run_id = a_run(project, parked, status, **columns)
    before = row(run_id)
    assert move(lambda s: lifecycle.claim(s, run_id, WORKER, timedelta(seconds=30)))[0] is None
    assert row(run_id) == before


def test_hand_back_requeues_with_a_countdown_and_keeps_the_dequeue(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.DEQUEUED, locked_by=WORKER, dequeued_at=ago())
    dequeued = row(run_id).dequeued_at
    queued, now = move(lambda s: lifecycle.hand_back(s, run_id, 5), publish=True)
    assert queued is not None
    stored = row(run_id)
    assert (stored.status, stored.dispatched_at, stored.dequeued_at) == (S.QUEUED, now, dequeued)
    assert parked.messages() == 1


def test_park_pending_version_takes_the_run_out_of_the_queue(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.DEQUEUED, locked_by=WORKER)
    assert move(lambda s: lifecycle.park_pending_version(s, run_id), publish=True)[0] is not None
    assert row(run_id).status == S.PENDING_VERSION
    assert parked.messages() == 0


def test_start_begins_an_attempt_and_keeps_the_first_start(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.DEQUEUED, locked_by=WORKER, heartbeat_at=ago())
    started, now = move(lambda s: lifecycle.start(s, run_id, WORKER, "v2"))
    assert started is not None
    stored = row(run_id)
    assert (stored.status, stored.attempt_count, stored.version) == (S.EXECUTING, 1, "v2")
    assert stored.started_at == stored.heartbeat_at == now

    with transaction() as session:  # a second attempt (after a retry and a claim)
        session.execute(update(Run).where(Run.id == run_id).values(status=S.DEQUEUED))
    assert move(lambda s: lifecycle.start(s, run_id, WORKER, "v3"))[0] is not None
    again = row(run_id)
    assert (again.attempt_count, again.version, again.started_at) == (2, "v3", now)


def test_start_refuses_a_run_another_worker_holds(project: ProjectKeys, parked: Parked) -> None:
    run_id = a_run(project, parked, S.DEQUEUED, locked_by=OTHER_WORKER)
    before = row(run_id)
    assert move(lambda s: lifecycle.start(s, run_id, WORKER, "v2"))[0] is None
    assert row(run_id) == before


def test_claim_and_start_writes_the_claim_and_the_first_attempt_at_once(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.QUEUED)
    started, now = move(
        lambda s: lifecycle.claim_and_start(s, run_id, WORKER, "v2", ["test-echo"], "attempt_x"))
    assert started is not None
    stored = row(run_id)
    assert (stored.status, stored.locked_by, stored.version) == (S.EXECUTING, WORKER, "v2")
    assert stored.dequeued_at == stored.started_at == stored.heartbeat_at == now
    assert stored.attempt_count == 1
    with transaction() as session:  # the same statement opened the first attempt
        opened = session.execute(select(Attempt).where(Attempt.run_id == run_id)).scalar_one()
        assert (opened.id, opened.number, opened.status, opened.worker, opened.started_at) == (
            "attempt_x", 1, AttemptStatus.EXECUTING, WORKER, now)


def test_claim_and_start_alone_commits_at_once_and_returns_the_run_as_the_orm_loads_it(
    project: ProjectKeys, parked: Parked
) -> None:
    """In an autocommit unit the move runs below SQLAlchemy: the run it returns must be
    the one SQLAlchemy would have built from the same row, value for value and type for
    type (statuses as their enum, JSON decoded, times aware)."""
    run_id = a_run(project, parked, S.QUEUED, tags=["a", "b"], metadata_={"k": [1, {"x": None}]})
    with autocommit() as unit:
        started = lifecycle.claim_and_start(unit, run_id, WORKER, "v2", ["test-echo"],
                                            new_attempt_id())
        assert row(run_id).status == S.EXECUTING  # committed before the unit ends
    assert started is not None
    with transaction() as session:
        loaded = session.get(Run, run_id)
        assert loaded is not None
        for key, _ in RUN_COLUMNS:
            value, expected = getattr(started, key), getattr(loaded, key)
            assert (value, type(value)) == (expected, type(expected)), key
    assert isinstance(started.status, RunStatus)


@pytest.mark.parametrize(
    ("columns", "tasks"),
    [
        ({"attempt_count": 1}, ["test-echo"]),
        ({}, ["another-task"]),
        ({"locked_version": "v1"}, ["test-echo"]),
        ({"ttl_expires_at": ago(timedelta(seconds=1))}, ["test-echo"]),
    ],
    ids=["attempted before", "task not on this worker", "locked to another version",
         "past its ttl"],
)
def test_claim_and_start_leaves_any_other_run_to_the_long_way(
    project: ProjectKeys, parked: Parked, columns: dict[str, Any], tasks: list[str]
) -> None:
    run_id = a_run(project, parked, S.QUEUED, **columns)
    before = row(run_id)
    assert move(
        lambda s: lifecycle.claim_and_start(s, run_id, WORKER, "v2", tasks, new_attempt_id())
    )[0] is None
    assert row(run_id) == before


def test_heartbeat_refreshes_only_the_holders_execution(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.EXECUTING, locked_by=WORKER, heartbeat_at=ago())
    beat, now = move(lambda s: lifecycle.heartbeat(s, run_id, WORKER))
    assert beat is True
    assert row(run_id).heartbeat_at == now

    before = row(run_id)
    assert move(lambda s: lifecycle.heartbeat(s, run_id, OTHER_WORKER))[0] is False
    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(status=S.CANCELED))
    assert move(lambda s: lifecycle.heartbeat(s, run_id, WORKER))[0] is False
    assert row(run_id).heartbeat_at == before.heartbeat_at


# --- an attempt's ends ----------------------------------------------------------------------


def _usage(elapsed_ms: int, before: Any) -> tuple[int, float, float]:
    settings = get_settings()
    return (
        before.duration_ms + elapsed_ms,
        before.cost_in_cents + elapsed_ms * settings.cost_per_ms_in_cents,
        settings.base_cost_in_cents,
    )


def _executing(project: ProjectKeys, parked: Parked, **columns: Any) -> str:
    return a_run(project, parked, S.EXECUTING, locked_by=WORKER, heartbeat_at=func.now(),
                 duration_ms=100, cost_in_cents=0.5, attempt_count=1, **columns)


def test_complete_attempt_moves_the_run_only_with_its_open_attempt(
    project: ProjectKeys, parked: Parked
) -> None:
    """One statement closes the attempt and completes the run: both, or (the attempt was
    closed already) neither, or (another worker holds the run, or it was canceled) the
    attempt alone, as the caller's two paths need."""
    done = _executing(project, parked)
    assert move(lambda s: _with_open_attempt(s, done))[0]
    assert move(lambda s: lifecycle.complete_attempt(s, done, WORKER, 1, {"ok": 1}, 5))[0] == (
        True, True)
    assert row(done).status == S.COMPLETED
    assert row(done).output == {"ok": 1}

    closed_before = _executing(project, parked)
    assert move(lambda s: lifecycle.complete_attempt(
        s, closed_before, WORKER, 1, {"ok": 1}, 5))[0] == (False, False)
    assert row(closed_before).status == S.EXECUTING

    elsewhere = _executing(project, parked)
    assert move(lambda s: _with_open_attempt(s, elsewhere))[0]
    assert move(lambda s: lifecycle.complete_attempt(
        s, elsewhere, "another-worker", 1, {"ok": 1}, 5))[0] == (True, False)
    assert row(elsewhere).status == S.EXECUTING


def test_complete_alone_writes_the_run_and_its_attempt_or_nothing(
    project: ProjectKeys, parked: Parked
) -> None:
    """The completion run alone in autocommit: both rows, or nothing at all (so that the
    worker may take the long way in a transaction): never the attempt alone."""
    def attempt_status(run_id: str) -> str | None:
        with transaction() as session:
            return session.execute(text(
                "SELECT status FROM attempts WHERE run_id = :r AND number = 1"), {"r": run_id}
            ).scalar()

    def alone(run_id: str, worker: str = WORKER) -> bool:
        with autocommit() as unit:
            return lifecycle.complete_alone(unit, run_id, worker, 1, {"ok": 1}, 5)

    done = _executing(project, parked)
    assert move(lambda s: _with_open_attempt(s, done))[0]
    assert alone(done) is True
    assert (row(done).status, row(done).output, attempt_status(done)) == (
        S.COMPLETED, {"ok": 1}, "COMPLETED")

    closed_before = _executing(project, parked)
    assert alone(closed_before) is False
    assert row(closed_before).status == S.EXECUTING

    held_elsewhere = _executing(project, parked)
    limited = _executing(project, parked, concurrency_limits=["task/test-echo"])
    child = _executing(project, parked, waitpoint_id="waitpoint_parent")
    for run_id, worker in ((held_elsewhere, "another-worker"), (limited, WORKER),
                           (child, WORKER)):
        assert move(lambda s, r=run_id: _with_open_attempt(s, r))[0]
        assert alone(run_id, worker) is False
        assert (row(run_id).status, attempt_status(run_id)) == (S.EXECUTING, "EXECUTING")


def test_complete_writes_the_output_the_usage_and_the_end(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = _executing(project, parked)
    before = row(run_id)
    done, now = move(lambda s: _with_open_attempt(s, run_id) and lifecycle.complete_attempt(
        s, run_id, WORKER, 1, {"ok": 1}, 250)[1])
    assert done is True
    stored = row(run_id)
    assert stored.status == S.COMPLETED
    assert (stored.output, stored.output_type) == ({"ok": 1}, "application/json")
    assert (stored.duration_ms, stored.cost_in_cents, stored.base_cost_in_cents) == pytest.approx(
        _usage(250, before))
    assert (stored.finished_at, stored.heartbeat_at) == (now, None)


@pytest.mark.parametrize(
    ("name", "target"), [("fail", S.FAILED), ("time_out", S.TIMED_OUT)]
)
def test_fail_and_time_out_write_the_error_the_usage_and_the_end(
    project: ProjectKeys, parked: Parked, name: str, target: RunStatus
) -> None:
    run_id = _executing(project, parked)
    before = row(run_id)
    end = getattr(lifecycle, name)
    ended, now = move(lambda s: end(s, run_id, WORKER, ERROR, 250))
    assert ended is not None
    stored = row(run_id)
    assert (stored.status, stored.error) == (target, ERROR)
    assert (stored.duration_ms, stored.cost_in_cents, stored.base_cost_in_cents) == pytest.approx(
        _usage(250, before))
    assert (stored.finished_at, stored.heartbeat_at) == (now, None)


def test_retry_ends_the_attempt_and_publishes_the_next_with_its_delay(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = _executing(project, parked)
    before = row(run_id)
    retrying, now = move(lambda s: lifecycle.retry(s, run_id, WORKER, ERROR, 250, 30.0),
                         publish=True)
    assert retrying is not None
    stored = row(run_id)
    assert (stored.status, stored.error, stored.heartbeat_at) == (S.RETRYING, ERROR, None)
    assert (stored.duration_ms, stored.cost_in_cents, stored.base_cost_in_cents) == pytest.approx(
        _usage(250, before))
    assert stored.dispatched_at == now
    assert stored.next_attempt_at == now + timedelta(seconds=30)
    assert stored.finished_at is None
    assert parked.messages() == 1


@pytest.mark.parametrize(
    "end",
    [
        lambda s, r: _with_open_attempt(s, r) and lifecycle.complete_attempt(
            s, r, WORKER, 1, {"ok": 1}, 250)[1],
        lambda s, r: lifecycle.fail(s, r, WORKER, ERROR, 250),
        lambda s, r: lifecycle.time_out(s, r, WORKER, ERROR, 250),
        lambda s, r: lifecycle.retry(s, r, WORKER, ERROR, 250, 1.0),
    ],
    ids=["complete", "fail", "time_out", "retry"],
)
def test_an_attempts_end_is_refused_once_another_worker_holds_the_run(
    project: ProjectKeys, parked: Parked, end: Callable[[Any, str], Any]
) -> None:
    run_id = a_run(project, parked, S.EXECUTING, locked_by=OTHER_WORKER)
    before = row(run_id)
    assert not move(lambda s: end(s, run_id), publish=True)[0]
    assert row(run_id) == before
    assert parked.messages() == 0


def test_crash_ends_the_run_with_its_error(project: ProjectKeys, parked: Parked) -> None:
    run_id = a_run(project, parked, S.RETRYING)
    crashed, now = move(lambda s: lifecycle.crash(s, run_id, ERROR))
    assert crashed is not None
    stored = row(run_id)
    assert (stored.status, stored.error, stored.finished_at) == (S.CRASHED, ERROR, now)


def test_record_usage_adds_an_attempts_cost_to_a_run_someone_else_ended(
    project: ProjectKeys, parked: Parked
) -> None:
    run_id = a_run(project, parked, S.CANCELED, duration_ms=100, cost_in_cents=0.5,
                   finished_at=ago())
    before = row(run_id)
    move(lambda s: lifecycle.record_usage(s, run_id, 250))
    stored = row(run_id)
    assert (stored.duration_ms, stored.cost_in_cents, stored.base_cost_in_cents) == pytest.approx(
        _usage(250, before))
    assert (stored.status, stored.finished_at) == (S.CANCELED, before.finished_at)


# --- release and redispatch -----------------------------------------------------------------


def _waiting_and_the_rest(project: ProjectKeys, parked: Parked) -> tuple[str, dict[str, Any]]:
    """A PENDING_VERSION run of ``test-echo`` in dev, and runs a release must leave alone:
    one of a task no version has, one of another environment, one in every other status."""
    waiting = a_run(project, parked, S.PENDING_VERSION)
    others = [a_run(project, parked, status) for status in RunStatus
              if status is not S.PENDING_VERSION]
    other_task = a_run(project, parked, S.PENDING_VERSION, task_identifier="no-such-task")
    other_env = a_run(project, parked, S.PENDING_VERSION,
                      environment_id=project.environment_ids["prod"])
    # prod's current version lacks test-echo (so the missed-release sweep leaves it too).
    with transaction() as session:
        versions_repo.upsert_worker_version(
            session, project.environment_ids["prod"], "20991231.1-none", [])
    return waiting, {run_id: row(run_id) for run_id in [*others, other_task, other_env]}


def _released_into_the_queue(run_id: str, now: datetime) -> None:
    stored = row(run_id)
    assert can_transition(S.PENDING_VERSION, stored.status)
    assert stored.status == S.QUEUED
    assert stored.queued_at == stored.dispatched_at == now
    assert stored.ttl_expires_at == now + timedelta(minutes=10)


def test_release_pending_version_queues_the_environments_waiting_runs_of_those_tasks(
    project: ProjectKeys, parked: Parked
) -> None:
    waiting, untouched = _waiting_and_the_rest(project, parked)
    dev = project.environment_ids["dev"]
    released, now = move(
        lambda s: lifecycle.release_pending_version(s, dev, ["test-echo"], 1000), publish=True)
    assert released == [waiting]
    _released_into_the_queue(waiting, now)
    assert {run_id: row(run_id) for run_id in untouched} == untouched
    assert parked.messages() == 1


def test_release_pending_version_releases_at_most_its_limit(
    project: ProjectKeys, parked: Parked
) -> None:
    waiting = [a_run(project, parked, S.PENDING_VERSION) for _ in range(3)]
    dev = project.environment_ids["dev"]
    first, _ = move(lambda s: lifecycle.release_pending_version(s, dev, ["test-echo"], 2))
    rest, _ = move(lambda s: lifecycle.release_pending_version(s, dev, ["test-echo"], 2))
    assert (len(first), len(rest)) == (2, 1)
    assert sorted(first + rest) == sorted(waiting)


def test_release_missed_pending_version_queues_runs_their_current_version_can_execute(
    project: ProjectKeys, parked: Parked
) -> None:
    """The sweep's backstop: a waiting run whose environment's current version (here the
    test worker's, registered by the ``project`` fixture) has its task."""
    waiting, untouched = _waiting_and_the_rest(project, parked)
    released, now = move(lambda s: lifecycle.release_missed_pending_version(s, 1000),
                         publish=True)
    assert released == [waiting]
    _released_into_the_queue(waiting, now)
    assert {run_id: row(run_id) for run_id in untouched} == untouched
    assert parked.messages() == 1


def test_redispatch_lost_republishes_a_quiet_queued_run_and_an_abandoned_claim(
    project: ProjectKeys, parked: Parked
) -> None:
    lost = a_run(project, parked, S.QUEUED, dispatched_at=ago())
    abandoned = a_run(project, parked, S.EXECUTING, locked_by=OTHER_WORKER, heartbeat_at=ago(),
                      dispatched_at=ago())
    fresh = a_run(project, parked, S.QUEUED, dispatched_at=func.now())
    live = a_run(project, parked, S.EXECUTING, locked_by=OTHER_WORKER, heartbeat_at=func.now(),
                 dispatched_at=ago())
    untouched = {run_id: row(run_id) for run_id in (fresh, live)}
    database_up_for(timedelta(seconds=get_settings().stale_run_seconds))

    count, now = move(lifecycle.redispatch_lost, publish=True)

    assert count == 2
    assert row(lost).dispatched_at == row(abandoned).dispatched_at == now
    assert (row(lost).status, row(abandoned).status) == (S.QUEUED, S.EXECUTING)
    assert {run_id: row(run_id) for run_id in untouched} == untouched
    assert parked.messages() == 2
