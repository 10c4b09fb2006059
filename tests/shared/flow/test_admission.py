"""Admission against a real Postgres: who takes a slot, in which order, and that every
counter agrees with the slots and the line after each move. The test plays the worker
(``execute_run`` in this process); what an admission publishes goes to a queue prefix
no worker serves (``own_queues``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, text, update

from reprise.registry import REGISTRY
from reprise_server.shared.db import get_engine, transaction
from reprise_server.shared.flow import admission, limits, queues
from reprise_server.shared.runs import attempts as steps
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.service import cancel_run
from reprise_server.shared.ttl.service import expire_stale_runs
from reprise_server.workers import execution
from tests.support import flow
from tests.support.fixtures import ProjectKeys, lock_waiters, wait_for

pytestmark = pytest.mark.usefixtures("own_queues")

VERSION = "20261122.1"
QUICK = {"seconds": 0}


def execute(run_id: str, worker: str = "w") -> Any:
    return execution.execute_run(run_id, REGISTRY, worker, VERSION)


def sweep() -> int:
    with transaction() as session:
        return admission.sweep(session)


@contextmanager
def limit_row_locked(lid: str) -> Iterator[None]:
    """Hold the limit's row lock in another connection until the block ends."""
    with get_engine().connect() as conn:
        conn.execute(text("SELECT id FROM concurrency_limits WHERE id = :id FOR UPDATE"),
                     {"id": lid})
        try:
            yield
        finally:
            conn.rollback()


def test_a_limit_admits_up_to_its_total_and_each_freed_slot_admits_the_next_at_once(
    project: ProjectKeys,
) -> None:
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 6, payload=QUICK)
    assert flow.admitted(ids) == sorted(ids[:2])
    assert flow.state(lid) == flow.LimitState(2, 2, 4, {"": (2, 4)})
    flow.assert_consistent(lid)
    for i, run_id in enumerate(ids):
        assert execute(run_id).status == "COMPLETED"
        # The transaction that completed it admitted the next in line.
        assert flow.admitted(ids) == sorted(ids[i + 1:i + 3])
        flow.assert_consistent(lid)
    assert flow.state(lid) == flow.LimitState(0, 0, 0, {"": (0, 0)})


@contextmanager
def sent_from_this_thread() -> Iterator[tuple[list[str], list[int]]]:
    """The statements this thread sends while the block runs (those run below SQLAlchemy
    too: they are announced to the engine's listeners), and how many connections it takes
    from the pool (a heartbeat, on its own thread, is not counted)."""
    from sqlalchemy import event

    engine = get_engine()
    me = threading.get_ident()
    statements: list[str] = []
    checkouts = [0]

    def sent(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() == me:
            statements.append(" ".join(statement.split()))

    def checked_out(*_: Any) -> None:
        if threading.get_ident() == me:
            checkouts[0] += 1

    event.listen(engine, "before_cursor_execute", sent)
    event.listen(engine.pool, "checkout", checked_out)
    try:
        yield statements, checkouts
    finally:
        event.remove(engine, "before_cursor_execute", sent)
        event.remove(engine.pool, "checkout", checked_out)


def test_a_limited_run_is_claimed_in_one_statement_and_its_completion_admits_the_next_in_three(
    project: ProjectKeys, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a run under a limit costs its worker: the claim alone in autocommit, as an
    unlimited run's, then one transaction of three round trips that completes it, locks the
    limit and gives its slot back (two statements sent together), and admits the next run.
    Two connections taken, none for nothing (a limited run's completion never tries the
    one-statement unit first)."""
    lid = flow.limit_id(project, "task/flow-one")
    ids = flow.trigger(project, "flow-one", 3, payload=QUICK)
    assert execute(ids[0]).status == "COMPLETED"  # the environment's slug is cached now
    assert flow.admitted(ids) == [ids[1]]
    pipelined: list[tuple[list[str], list[str], list[str]]] = []
    lock_and_free = admission._lock_and_free

    def recorded(conn: Any, named: list[str], released: list[str]) -> list[str]:
        locked = lock_and_free(conn, named, released)
        pipelined.append((named, released, locked))
        return locked

    monkeypatch.setattr(admission, "_lock_and_free", recorded)
    with sent_from_this_thread() as (statements, checkouts):
        assert execute(ids[1]).status == "COMPLETED"
    assert flow.admitted(ids) == [ids[2]]
    flow.assert_consistent(lid)
    # The lock and the slot given back: one pipeline, below SQLAlchemy.
    assert pipelined == [([], [ids[1]], [lid])]
    assert len(statements) == 3, "\n".join(s[:100] for s in statements)
    # The claim, the completion, the next run admitted.
    expected = [("UPDATE runs", "INSERT INTO attempts"), ("UPDATE attempts", "UPDATE runs"),
                ("SKIP LOCKED", "INSERT INTO concurrency_slots")]
    for statement, parts in zip(statements, expected, strict=True):
        assert [part for part in parts if part not in statement] == [], statement[:100]
    assert checkouts == [2]


def test_higher_priority_waiting_runs_are_admitted_first(project: ProjectKeys) -> None:
    lid = flow.limit_id(project, "task/flow-one")
    [first] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    waiting = [(p, flow.trigger(project, "flow-one", 1, payload=QUICK, priority=p)[0])
               for p in (0, 10, 5, 100, 0)]
    ids = [run_id for _, run_id in waiting]
    order = []
    running = first
    for _ in waiting:
        assert execute(running).status == "COMPLETED"
        [running] = flow.admitted(ids)
        order.append(running)
        flow.assert_consistent(lid)
    # By priority; the two of priority 0 in the order they were queued.
    assert order == [ids[3], ids[1], ids[2], ids[0], ids[4]]


def test_priority_order_with_equal_priorities_is_first_queued_first(
    project: ProjectKeys,
) -> None:
    [first] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    low = flow.trigger(project, "flow-one", 3, payload=QUICK)
    high = flow.trigger(project, "flow-one", 2, payload=QUICK, priority=60)
    order = []
    running = first
    for _ in range(5):
        assert execute(running).status == "COMPLETED"
        [running] = flow.admitted(low + high)
        order.append(running)
    assert order == high + low


def test_keys_are_separate_pools_under_a_shared_total(project: ProjectKeys) -> None:
    lid = flow.limit_id(project, "task/flow-keyed")
    runs = {f"k{k}": flow.trigger(project, "flow-keyed", 2, payload=QUICK,
                                  concurrencyKey=f"k{k}") for k in range(5)}
    every = [r for ids in runs.values() for r in ids]
    held = flow.admitted(every)
    assert len(held) == 3  # the total, one per key
    key_of = {r: k for k, ids in runs.items() for r in ids}
    assert len({key_of[r] for r in held}) == 3
    flow.assert_consistent(lid)
    done: set[str] = set()
    while len(done) < len(every):
        held = flow.admitted(every)
        assert 1 <= len(held) <= 3
        assert len({key_of[r] for r in held}) == len(held)  # never two of one key
        execute(held[0])
        done.add(held[0])
        flow.assert_consistent(lid)
    assert flow.state(lid).running == 0


def test_a_named_limit_shared_by_two_tasks_bounds_both_together(project: ProjectKeys) -> None:
    lid = flow.limit_id(project, "flow-shared")
    a = flow.trigger(project, "flow-shared-a", 3, payload=QUICK)
    b = flow.trigger(project, "flow-shared-b", 3, payload=QUICK)
    assert flow.admitted(a + b) == sorted(a[:2])
    execute(a[0])
    execute(a[1])
    assert flow.admitted(a + b) == sorted([a[2], b[0]])
    flow.assert_consistent(lid)


def test_cancel_frees_a_slot_or_a_place_in_line(project: ProjectKeys) -> None:
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 5, payload=QUICK)
    with transaction() as session:
        cancel_run(session, ids[3])  # waiting
    assert flow.state(lid) == flow.LimitState(2, 2, 2, {"": (2, 2)})
    with transaction() as session:
        cancel_run(session, ids[0])  # admitted, not yet claimed
    assert flow.admitted(ids) == sorted([ids[1], ids[2]])
    flow.assert_consistent(lid)
    # Executing: its worker stops the function at its next heartbeat, and only then gives
    # the slot back (the next run in line never overlaps it); the sweep leaves it alone.
    for run_id in ids[1:3]:
        with transaction() as session:
            assert not isinstance(steps.claim_run(session, run_id, "w"), steps.Outcome)
            assert steps.begin_attempt(session, run_id, "w", VERSION) is not None
    with transaction() as session:
        cancel_run(session, ids[1])
    assert flow.admitted(ids) == sorted([ids[1], ids[2]])
    assert sweep() == 0
    assert flow.admitted(ids) == sorted([ids[1], ids[2]])
    flow.assert_consistent(lid)
    with transaction() as session:
        run = session.get(Run, ids[1])
        assert run is not None
        steps.finish_attempt(session, run, "w", 1, 5, steps.Interrupted("canceled"))
    assert flow.admitted(ids) == sorted([ids[2], ids[4]])
    flow.assert_consistent(lid)
    # Its worker gone silent instead: the slot comes back once the heartbeat is stale.
    with transaction() as session:
        cancel_run(session, ids[2])
    assert flow.admitted(ids) == sorted([ids[2], ids[4]])
    with transaction() as session:
        session.execute(update(Run).where(Run.id == ids[2]).values(
            heartbeat_at=func.now() - timedelta(minutes=5)))
    assert sweep() == 0  # the slot back; nothing left in line to admit
    assert flow.admitted(ids) == [ids[4]]
    flow.assert_consistent(lid)


def test_ttl_expiry_of_waiting_and_admitted_runs_frees_their_places(project: ProjectKeys) -> None:
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 5, payload=QUICK, ttl="1h")
    late = flow.trigger(project, "flow-two", 1, payload=QUICK)  # no TTL
    with transaction() as session:
        session.execute(update(Run).where(Run.id.in_(ids[:4])).values(
            ttl_expires_at=func.now() - timedelta(seconds=1)))
    with transaction() as session:
        assert expire_stale_runs(session) == 4  # two admitted (never claimed), two waiting
    assert {flow.admission_of(ids)[r][0] for r in ids[:4]} == {"EXPIRED"}
    assert flow.admitted(ids + late) == sorted([ids[4], late[0]])
    assert flow.state(lid) == flow.LimitState(2, 2, 0, {"": (2, 0)})
    flow.assert_consistent(lid)


def test_a_retry_gives_its_slot_back_for_the_backoff_and_reenters_the_line(
    project: ProjectKeys,
) -> None:
    lid = flow.limit_id(project, "task/flow-one")
    [flaky] = flow.trigger(project, "flow-one", 1, payload={**QUICK, "failUntil": 2})
    [other] = flow.trigger(project, "flow-one", 1, payload={"hold": "/nonexistent", "maxWait": 0})
    assert execute(flaky).status == "RETRYING"
    assert flow.admission_of([flaky])[flaky] == ("RETRYING", "backoff")
    # The backoff freed the slot: the other run was admitted in that transaction.
    assert flow.admitted([flaky, other]) == [other]
    flow.assert_consistent(lid)
    # The retry's delivery: the limit is full, so the run enters the line.
    assert "backoff over: waiting" in execute(flaky).detail
    assert flow.admission_of([flaky])[flaky] == ("RETRYING", "waiting")
    assert flow.state(lid) == flow.LimitState(1, 1, 1, {"": (1, 1)})
    assert execute(other).status == "COMPLETED"
    # Admitted while RETRYING: it holds the slot until its next attempt ends.
    assert flow.admission_of([flaky])[flaky] == ("RETRYING", None)
    assert flow.admitted([flaky, other]) == [flaky]
    flow.assert_consistent(lid)
    # The sweep must not take the slot of an admitted retry back as stale.
    assert sweep() == 0
    assert flow.admitted([flaky, other]) == [flaky]
    [third] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    assert flow.admitted([flaky, other, third]) == [flaky]
    assert execute(flaky).status == "COMPLETED"
    assert flow.admitted([flaky, other, third]) == [third]
    flow.assert_consistent(lid)


def test_a_durable_wait_gives_its_slot_back_and_the_resumed_run_stands_in_line_again(
    project: ProjectKeys,
) -> None:
    """A limited run (total 1) that goes into a wait holds no slot while it waits: the
    next run in line is admitted in the transaction that suspended it. When the wait is
    over the run re-enters its queue held back (the slot is taken), and is admitted only
    once that slot is free again, ahead of a run queued while it waited (its rank is
    when it was first queued)."""
    from reprise_server.shared.durable import tokens
    from reprise_server.shared.projects.service import AuthContext

    lid = flow.limit_id(project, "task/flow-wait")
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    with transaction() as session:
        token = tokens.create_token(session, auth).token.id
    [waiter] = flow.trigger(project, "flow-wait", 1, payload={"token": token})
    [other] = flow.trigger(project, "flow-wait", 1)
    assert flow.admitted([waiter, other]) == [waiter]
    assert flow.admission_of([other])[other] == ("QUEUED", "waiting")

    assert execute(waiter).status == "WAITING"
    assert flow.admission_of([waiter, other]) == {
        waiter: ("WAITING", None), other: ("QUEUED", None)}
    assert flow.admitted([waiter, other]) == [other]  # the wait freed the slot
    assert flow.state(lid) == flow.LimitState(1, 1, 0, {"": (1, 0)})
    flow.assert_consistent(lid)
    [late] = flow.trigger(project, "flow-wait", 1)

    with transaction() as session:
        assert tokens.complete_token(session, auth, token, {"approved": True})
    # Resumed: back in its queue, but in line behind the run that took its slot.
    assert flow.admission_of([waiter])[waiter] == ("QUEUED", "waiting")
    assert flow.admitted([waiter, other, late]) == [other]
    assert flow.state(lid) == flow.LimitState(1, 1, 2, {"": (1, 2)})
    flow.assert_consistent(lid)
    assert sweep() == 0  # no room: nothing the sweep may admit either

    assert execute(other).status == "COMPLETED"
    assert flow.admitted([waiter, other, late]) == [waiter]
    assert flow.admission_of([waiter])[waiter] == ("QUEUED", None)
    flow.assert_consistent(lid)
    assert execute(waiter).status == "COMPLETED"
    with transaction() as session:
        run = session.get(Run, waiter)
        assert run is not None
        assert (run.output, run.resume_count) == ({"data": {"approved": True}}, 1)
    assert flow.admitted([waiter, other, late]) == [late]
    assert execute(late).status == "COMPLETED"
    assert flow.state(lid) == flow.LimitState(0, 0, 0, {"": (0, 0)})
    flow.assert_consistent(lid)


def _replay(project: ProjectKeys, run_id: str, **body: Any) -> str:
    """Replay ``run_id`` (``body``: the replay's overrides, wire names), the command
    accepted and applied in this process; the new run's id."""
    return _apply_replay(project, run_id, **body)[0]


def _apply_replay(project: ProjectKeys, run_id: str, **body: Any) -> tuple[str, Any]:
    """:func:`_replay`, and the command as applied (its status and reason)."""
    from reprise_server.shared.commands.schemas import ReplayRequest
    from reprise_server.shared.commands.service import accept_replay, apply_command
    from reprise_server.shared.dashboard import run_head
    from reprise_server.shared.projects.service import AuthContext

    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    with transaction() as session:
        accepted = accept_replay(session, auth, run_head(session, auth, run_id),
                                 ReplayRequest.model_validate(body), publish=False)
        assert accepted.id is not None
        command = apply_command(session, accepted.id, "test")
        outcome = (command.status, command.reason) if command is not None else None
    return accepted.target_run_id, outcome


def _flow_options(run_id: str) -> tuple[str | None, list[str] | None]:
    with transaction() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.concurrency_key, run.concurrency_limits


def test_a_replay_of_a_limited_run_keeps_its_key_and_stands_in_line_under_it(
    project: ProjectKeys,
) -> None:
    lid = flow.limit_id(project, "task/flow-keyed")
    [original] = flow.trigger(project, "flow-keyed", 1, payload=QUICK, concurrencyKey="acme")
    assert flow.admitted([original]) == [original]
    again = _replay(project, original)
    assert _flow_options(again) == ("acme", ["task/flow-keyed"])
    # One per key: the replay waits behind the original, in the original's pool.
    assert flow.admission_of([again])[again] == ("QUEUED", "waiting")
    assert flow.state(lid).keys["acme"] == (1, 1)
    flow.assert_consistent(lid)
    # A replay into another pool is admitted at once (the total has room).
    elsewhere = _replay(project, original, concurrencyKey="globex")
    assert _flow_options(elsewhere) == ("globex", ["task/flow-keyed"])
    assert flow.admitted([original, again, elsewhere]) == sorted([original, elsewhere])
    assert execute(original).status == "COMPLETED"
    assert flow.admitted([original, again, elsewhere]) == sorted([again, elsewhere])
    flow.assert_consistent(lid)


def test_a_replay_carries_the_named_limits_its_trigger_named(project: ProjectKeys) -> None:
    """``options.concurrency`` is a trigger option like any other: the replay holds the
    named limits the original's trigger put in place of the task's; a run triggered
    without it is replayed with what its task declares."""
    one = flow.limit_id(project, "task/flow-one")
    shared = flow.limit_id(project, "flow-shared")
    [named] = flow.trigger(project, "flow-one", 1, payload=QUICK, concurrency=["flow-shared"])
    [plain] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    # flow-shared-a declares flow-shared and has no limit of its own: [] holds none.
    [bare] = flow.trigger(project, "flow-shared-a", 1, payload=QUICK, concurrency=[])
    assert _flow_options(named)[1] == ["task/flow-one", "flow-shared"]
    assert _flow_options(bare)[1] is None
    replays = {run_id: _replay(project, run_id) for run_id in (named, plain, bare)}
    assert _flow_options(replays[named])[1] == ["task/flow-one", "flow-shared"]
    assert _flow_options(replays[plain])[1] == ["task/flow-one"]
    assert _flow_options(replays[bare])[1] is None
    # The unlimited one took the fast path; the others stand in task/flow-one's line (one
    # of them, the named replay, in flow-shared's too).
    assert flow.admission_of([replays[bare]])[replays[bare]] == ("QUEUED", None)
    assert flow.state(shared).waiting == 1
    assert flow.state(one).waiting == 3
    flow.assert_consistent(one, shared)


def test_a_replay_into_an_environment_without_a_carried_limit_is_rejected_naming_it(
    project: ProjectKeys,
) -> None:
    [named] = flow.trigger(project, "flow-one", 1, payload=QUICK, concurrency=["flow-shared"])
    with transaction() as session:  # staging never had a version declaring flow-shared
        session.execute(text("DELETE FROM concurrency_limits WHERE environment_id = :env "
                             "AND name = 'flow-shared'"),
                        {"env": project.environment_ids["staging"]})
    target, outcome = _apply_replay(project, named, environment="staging")
    assert outcome is not None
    status, reason = outcome
    assert str(status) == "REJECTED"
    assert "'flow-shared'" in reason
    with transaction() as session:
        assert session.get(Run, target) is None
    # Into dev, where it is declared, the same replay is created.
    assert _flow_options(_replay(project, named))[1] == ["task/flow-one", "flow-shared"]


def test_a_run_waiting_for_a_version_keeps_the_named_limits_its_trigger_named(
    project: ProjectKeys,
) -> None:
    """Released from PENDING_VERSION, a run takes what the new version declares, its named
    limits replaced by its trigger's ``concurrency`` — an empty one too (none held)."""
    from reprise.registry import Registry, TaskDefinition
    from reprise_server.workers.runtime import register_version

    lacking = Registry({"hello-world": TaskDefinition(id="hello-world", fn=lambda p, c: p)})
    register_version(lacking, "20261206.4-lacking", ["dev"], project.project_id)
    [declared] = flow.trigger(project, "flow-shared-a", 1, payload=QUICK)
    [none] = flow.trigger(project, "flow-shared-a", 1, payload=QUICK, concurrency=[])
    [other] = flow.trigger(project, "flow-one", 1, payload=QUICK, concurrency=["flow-shared"])
    assert {s for s, _ in flow.admission_of([declared, none, other]).values()} == {
        "PENDING_VERSION"}
    register_version(REGISTRY, "20261206.4-full", ["dev"], project.project_id)
    assert _flow_options(declared)[1] == ["flow-shared"]
    assert _flow_options(none)[1] is None
    assert _flow_options(other)[1] == ["flow-shared", "task/flow-one"]
    assert flow.admission_of([none])[none] == ("QUEUED", None)  # the fast path
    flow.assert_consistent(flow.limit_id(project, "flow-shared"),
                           flow.limit_id(project, "task/flow-one"))


def test_the_sweep_mends_drifted_counters_and_admits_what_fits(project: ProjectKeys) -> None:
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 4, payload=QUICK)
    with transaction() as session:
        # Drift of every kind: the limit counts a slot nobody holds, the key miscounts,
        # a slot is held by a run that ended without giving it back.
        session.execute(text("UPDATE concurrency_keys SET waiting = 7, running = 0 "
                             "WHERE limit_id = :id"), {"id": lid})
        session.execute(update(Run).where(Run.id == ids[0]).values(status="COMPLETED"))
    assert flow.drift(lid)
    assert sweep() == 1  # the stale slot dropped: the next in line admitted
    assert flow.admitted(ids) == sorted([ids[1], ids[2]])
    flow.assert_consistent(lid)
    assert sweep() == 0
    flow.assert_consistent(lid)


def test_the_sweep_reaches_a_limit_with_room_behind_thousands_of_full_ones(
    project: ProjectKeys,
) -> None:
    """More limits with runs waiting than one sweep takes, all full but one: that one,
    whose waiting run no settlement admitted, is swept (and admits) at once."""
    env = project.environment_ids["dev"]
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 3, payload=QUICK)
    full = "'climit_0000000' || lpad(g::text, 4, '0')"
    with transaction() as session:
        session.execute(text(
            "INSERT INTO concurrency_limits (id, environment_id, name, total_base, paused, "
            f"running) SELECT {full}, :env, 'full-' || g, 1, false, 1 "
            "FROM generate_series(1, 2000) g"), {"env": env})
        session.execute(text(
            "INSERT INTO concurrency_keys (limit_id, key, running, waiting, head_rank) "
            f"SELECT {full}, '', 1, 1, now() FROM generate_series(1, 2000) g"))
        # Widened behind admission's back: room, and nobody filled it.
        session.execute(text("UPDATE concurrency_limits SET total_base = 3 WHERE id = :id"),
                        {"id": lid})
    assert flow.admitted(ids) == sorted(ids[:2])
    assert sweep() == 1
    assert flow.admitted(ids) == sorted(ids)
    flow.assert_consistent(lid)


def test_the_sweep_puts_a_waiting_run_with_no_place_in_line_back_in_it(
    project: ProjectKeys,
) -> None:
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 3, payload=QUICK)
    with transaction() as session:  # its entry lost (as a dropped record would leave it)
        session.execute(text("DELETE FROM admission_line WHERE run_id = :id"), {"id": ids[2]})
        session.execute(text("UPDATE concurrency_keys SET waiting = 0, head_rank = NULL "
                             "WHERE limit_id = :id"), {"id": lid})
    execute(ids[0])
    assert flow.admitted(ids) == [ids[1]]  # the slot freed, but nobody was in line
    assert sweep() == 1
    assert flow.admitted(ids) == sorted(ids[1:])
    flow.assert_consistent(lid)


def test_a_freed_slot_is_handed_to_the_worker_that_freed_it_instead_of_published(
    project: ProjectKeys,
) -> None:
    """A finishing run's transaction admits the next run; offered a taker for the run's
    own queue, it hands that run over (no message), and a run handed over that nobody
    executes (its worker died) is what a lost publish is: the recovery sweep sends it."""
    from reprise_server.shared import broker

    lid = flow.limit_id(project, "task/flow-one")
    ids = flow.trigger(project, "flow-one", 4, payload=QUICK)
    flow.take_messages(ids)
    mine = admission.Taker(broker.execution_queue(None))
    assert execution.execute_run(ids[0], REGISTRY, "w", VERSION, mine).status == "COMPLETED"
    assert mine.taken == (ids[1], None)
    assert flow.admitted(ids) == [ids[1]]
    assert flow.messages(ids) == []  # handed over, not published
    flow.assert_consistent(lid)

    # The taker executes it; the run its end admits is handed over in turn.
    assert execution.execute_run(ids[1], REGISTRY, "w", VERSION, mine).status == "COMPLETED"
    assert mine.taken == (ids[2], None)
    assert flow.messages(ids) == []

    # The worker dies before claiming it: the run is queued and admitted with no message
    # anywhere, until the recovery sweep republishes it.
    with transaction() as session:
        session.execute(update(Run).where(Run.id == ids[2]).values(
            dispatched_at=datetime(2000, 1, 1, tzinfo=UTC)))
    with transaction() as session:
        assert lifecycle.redispatch_lost(session) == 1
    assert flow.messages(ids) == [ids[2]]
    flow.take_messages(ids)

    # A worker consuming another queue is not handed it: it is published.
    elsewhere = admission.Taker(broker.execution_queue("elsewhere"))
    outcome = execution.execute_run(ids[2], REGISTRY, "w", VERSION, elsewhere)
    assert outcome.status == "COMPLETED"
    assert elsewhere.taken is None
    assert flow.admitted(ids) == [ids[3]]
    assert flow.messages(ids) == [ids[3]]
    assert execute(ids[3]).status == "COMPLETED"
    assert flow.state(lid) == flow.LimitState(0, 0, 0, {"": (0, 0)})


def test_a_taker_takes_the_first_admitted_run_bound_for_its_own_queue() -> None:
    from reprise_server.shared import broker

    admitted = [("run_a", "other"), ("run_b", None), ("run_c", None)]
    assert admission.Taker(broker.execution_queue(None)).choose(admitted) == ("run_b", None)
    assert admission.Taker(broker.execution_queue("other")).choose(admitted) == ("run_a", "other")
    assert admission.Taker(broker.execution_queue("third")).choose(admitted) is None


def test_the_lost_message_recovery_never_publishes_a_held_back_run(project: ProjectKeys) -> None:
    ids = flow.trigger(project, "flow-one", 3, payload=QUICK)
    with transaction() as session:
        queues.set_paused(session, project.environment_ids["dev"], "flow-one", "task", True)
    [parked] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    assert flow.admission_of([parked])[parked] == ("QUEUED", "paused")
    with transaction() as session:
        # Dispatched before every message still in the queue (whichever test left it).
        session.execute(update(Run).where(Run.id.in_([*ids, parked])).values(
            dispatched_at=datetime(2000, 1, 1, tzinfo=UTC)))
    flow.take_messages([*ids, parked])  # and their messages are lost (a Redis flush)
    with transaction() as session:
        # Only the admitted one (its message may really be lost); not the two waiting in
        # line, nor the parked one.
        assert lifecycle.redispatch_lost(session) == 1


def test_a_run_parked_in_a_paused_queue_gives_its_slot_back_and_resumes_in_line(
    project: ProjectKeys,
) -> None:
    env = project.environment_ids["dev"]
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 3, payload=QUICK)
    with transaction() as session:
        queues.set_paused(session, env, "flow-two", "task", True)
    # An admitted run delivered while its queue is paused is parked, not started.
    assert execute(ids[0]).detail == "queue paused: parked"
    assert flow.admission_of([ids[0]])[ids[0]] == ("QUEUED", "paused")
    # Its slot went to the next in line (which will be parked too when delivered).
    assert flow.admitted(ids) == sorted([ids[1], ids[2]])
    with transaction() as session:
        assert not lifecycle.park_in_paused_queue(session, ids[0])  # already parked
    assert execute(ids[1]).detail == "queue paused: parked"
    [new] = flow.trigger(project, "flow-two", 1, payload=QUICK)
    assert flow.admission_of([new])[new] == ("QUEUED", "paused")  # enters parked
    flow.assert_consistent(lid)
    with transaction() as session:
        queues.set_paused(session, env, "flow-two", "task", False)
    # Back in line in rank order: ids[0] admitted beside ids[2]; ids[1] and new wait.
    assert flow.admitted([*ids, new]) == sorted([ids[0], ids[2]])
    assert flow.admission_of([ids[1], new]) == {
        ids[1]: ("QUEUED", "waiting"), new: ("QUEUED", "waiting")}
    flow.assert_consistent(lid)
    for run_id in [ids[0], ids[2], ids[1], new]:
        [holder] = [r for r in flow.admitted([*ids, new]) if r == run_id] or [None]
        assert holder == run_id
        assert execute(run_id).status == "COMPLETED"
    assert flow.state(lid) == flow.LimitState(0, 0, 0, {"": (0, 0)})


def test_end_backoff_and_resume_parked_move_only_the_runs_they_are_for(
    project: ProjectKeys,
) -> None:
    env = project.environment_ids["dev"]
    [run_id] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    with transaction() as session:
        assert lifecycle.end_backoff(session, run_id) is None  # not in a backoff
        assert lifecycle.resume_parked(session, env, "task/flow-one", 10) == 0
    [flaky] = flow.trigger(project, "flow-one", 1, payload={**QUICK, "failUntil": 2})
    execute(run_id)
    assert execute(flaky).status == "RETRYING"
    with transaction() as session:
        queues.set_paused(session, env, "flow-one", "task", True)
    with transaction() as session:
        # Its backoff over while its queue is paused: parked, not in line.
        assert lifecycle.end_backoff(session, flaky) == "paused"
    assert flow.admission_of([flaky])[flaky] == ("RETRYING", "paused")
    with transaction() as session:
        queues.set_paused(session, env, "flow-one", "task", False)
    assert flow.admitted([flaky]) == [flaky]
    assert execute(flaky).status == "COMPLETED"
    flow.assert_consistent(flow.limit_id(project, "task/flow-one"))


def test_pausing_a_limit_stops_admissions_and_resuming_admits_in_order(
    project: ProjectKeys,
) -> None:
    env = project.environment_ids["dev"]
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 4, payload=QUICK)
    with transaction() as session:
        limits.set_paused(session, env, "task/flow-two", True)
    execute(ids[0])
    execute(ids[1])
    assert flow.admitted(ids) == []  # the slots came back, nothing admitted
    assert sweep() == 0
    with transaction() as session:
        limits.set_paused(session, env, "task/flow-two", False)
    assert flow.admitted(ids) == sorted(ids[2:])
    flow.assert_consistent(lid)


def test_widening_a_limit_admits_waiting_runs_at_once_and_a_reset_narrows_it_again(
    project: ProjectKeys,
) -> None:
    env = project.environment_ids["dev"]
    lid = flow.limit_id(project, "task/flow-two")
    ids = flow.trigger(project, "flow-two", 6, payload=QUICK)
    with transaction() as session:
        limits.override(session, env, "task/flow-two", total=4)
    assert flow.admitted(ids) == sorted(ids[:4])
    with transaction() as session:
        limits.reset(session, env, "task/flow-two")
    # Narrowing takes back nothing admitted; the next admission waits until fewer than 2.
    for i in range(2):
        execute(ids[i])
        assert flow.admitted(ids) == sorted(ids[i + 1:4])
    execute(ids[2])
    assert flow.admitted(ids) == sorted(ids[3:5])
    execute(ids[3])
    assert flow.admitted(ids) == sorted(ids[4:6])
    flow.assert_consistent(lid)


def test_a_per_key_override_widens_one_key_until_it_lapses(project: ProjectKeys) -> None:
    env = project.environment_ids["dev"]
    lid = flow.limit_id(project, "task/flow-keyed")
    ids = flow.trigger(project, "flow-keyed", 3, payload=QUICK, concurrencyKey="hot")
    assert flow.admitted(ids) == [ids[0]]
    with transaction() as session:
        limits.override_key(session, env, "task/flow-keyed", "hot", 2, "1h")
    assert flow.admitted(ids) == sorted(ids[:2])
    with transaction() as session:
        session.execute(text("UPDATE concurrency_keys SET override_expires_at = now() "
                             "WHERE limit_id = :id"), {"id": lid})
    sweep()  # the override lapses: back to one per key
    execute(ids[0])
    assert flow.admitted(ids) == [ids[1]]
    execute(ids[1])
    assert flow.admitted(ids) == [ids[2]]
    flow.assert_consistent(lid)


# --- locks: interleavings forced with a row lock held by the test ---------------------------


def _two_limit_runs(project: ProjectKeys, count: int) -> list[str]:
    """Runs holding two limits: ``task/flow-one`` and ``flow-shared`` (total 2)."""
    return flow.trigger(project, "flow-one", count, payload=QUICK, concurrency=["flow-shared"])


def test_a_head_run_whose_other_limit_is_locked_is_skipped_and_admitted_by_the_sweep(
    project: ProjectKeys,
) -> None:
    one = flow.limit_id(project, "task/flow-one")
    shared = flow.limit_id(project, "flow-shared")
    ids = _two_limit_runs(project, 2)
    assert flow.admitted(ids) == [ids[0]]
    with limit_row_locked(shared):
        # The settlement that frees task/flow-one's slot locks flow-shared too (the run
        # held both), so it must wait for the test's lock: let it, in a thread.
        done = threading.Event()
        thread = threading.Thread(target=lambda: (execute(ids[0]), done.set()))
        thread.start()
        wait_for(lambda: lock_waiters() >= 1, what="the settlement waiting for flow-shared")
        assert not done.is_set()
    thread.join(10)
    assert done.is_set()
    assert flow.admitted(ids) == [ids[1]]
    flow.assert_consistent(one, shared)

    # A fill that cannot take the other limit's lock skips the run (never waits for it):
    # a widening of task/flow-one while flow-shared is locked elsewhere.
    more = _two_limit_runs(project, 1)
    execute(ids[1])
    assert flow.admitted(more) == more
    later = _two_limit_runs(project, 1)
    execute(more[0])
    assert flow.admitted(later) == later
    [blocked] = _two_limit_runs(project, 1)
    with limit_row_locked(shared):
        with transaction() as session:
            limits.override(session, project.environment_ids["dev"], "task/flow-one", total=2)
        assert flow.admitted([blocked]) == []  # skipped: flow-shared busy, not waited for
    assert sweep() == 1
    assert flow.admitted([blocked]) == [blocked]
    flow.assert_consistent(one, shared)


def test_settlements_of_overlapping_limits_wait_in_one_order_and_never_deadlock(
    project: ProjectKeys,
) -> None:
    """Two transactions each end a run holding the same two limits; the test holds the
    lower limit, both queue behind it (never one holding the higher and waiting for the
    lower), and both commit once it lets go."""
    one = flow.limit_id(project, "task/flow-one")
    shared = flow.limit_id(project, "flow-shared")
    first = min(one, shared)
    with transaction() as session:
        limits.override(session, project.environment_ids["dev"], "task/flow-one", total=2)
    ids = _two_limit_runs(project, 4)
    assert flow.admitted(ids) == sorted(ids[:2])
    errors: list[BaseException] = []

    def cancel(run_id: str) -> None:
        try:
            with transaction() as session:
                cancel_run(session, run_id)
        except BaseException as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)

    with limit_row_locked(first):
        threads = [threading.Thread(target=cancel, args=(r,)) for r in ids[:2]]
        for t in threads:
            t.start()
        wait_for(lambda: lock_waiters() >= 2, what="both settlements waiting")
    for t in threads:
        t.join(10)
    assert errors == []
    assert flow.admitted(ids) == sorted(ids[2:])
    flow.assert_consistent(one, shared)


def test_a_version_registering_while_a_settlement_waits_does_not_deadlock_with_it(
    project: ProjectKeys,
) -> None:
    """A registration takes the limits it declares; a settlement takes its limits in id
    order. The test holds the lower one; a settlement of both queues first, then a
    registration declaring both (the higher first). When the test lets go, the settlement
    gets the lower and needs the higher: the registration must not be holding it."""
    env = project.environment_ids["dev"]
    one = flow.limit_id(project, "task/flow-one")
    shared = flow.limit_id(project, "flow-shared")
    low, high = sorted([one, shared])
    [run_id] = _two_limit_runs(project, 1)
    # Bounds other than the registered ones: a registration writes (so locks) only the
    # limits it declares differently.
    declared = {
        "task/flow-one": limits.Declaration("task/flow-one", 5, None),
        "flow-shared": limits.Declaration("flow-shared", 6, None),
    }
    names = {one: "task/flow-one", shared: "flow-shared"}
    ordered = {names[high]: declared[names[high]], names[low]: declared[names[low]]}
    errors: list[BaseException] = []

    def settle() -> None:
        try:
            with transaction() as session:
                cancel_run(session, run_id)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def register() -> None:
        try:
            with transaction() as session:
                limits.register_declarations(session, env, ordered, {})
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    with limit_row_locked(low):
        settling = threading.Thread(target=settle)
        settling.start()
        wait_for(lambda: lock_waiters() >= 1, what="the settlement waiting")
        registering = threading.Thread(target=register)
        registering.start()
        wait_for(lambda: lock_waiters() >= 2, what="the registration waiting")
    settling.join(15)
    registering.join(15)
    assert errors == []
    assert flow.admission_of([run_id])[run_id][0] == "CANCELED"
    flow.assert_consistent(one, shared)


# --- a randomised run: the invariants after every step -------------------------------------

SEED = 7
# Bounds exceeded (a limit's slots above its total, a key's above its cap) and admitted
# runs missing a slot of a limit they hold: each row returned names one.
_OVER_BOUND = text(
    """
    SELECT 'total', l.name, count(s.run_id) FROM concurrency_limits l
    JOIN concurrency_slots s ON s.limit_id = l.id WHERE l.id = ANY(:ids)
    GROUP BY l.id, l.name, l.total_override, l.total_base
    HAVING count(s.run_id) > coalesce(l.total_override, l.total_base, 2147483647)
    UNION ALL
    SELECT 'key ' || k.key, k.limit_id, count(s.run_id) FROM concurrency_keys k
    JOIN concurrency_slots s ON s.limit_id = k.limit_id AND s.key = k.key
    WHERE k.limit_id = ANY(:ids) GROUP BY k.limit_id, k.key, k.cap
    HAVING count(s.run_id) > coalesce(k.cap, 2147483647)
    UNION ALL
    SELECT 'no slot', r.id, 0 FROM runs r, unnest(r.concurrency_limits) AS n(name)
    WHERE r.id = ANY(:runs) AND r.admission IS NULL
      AND r.status IN ('QUEUED', 'DEQUEUED', 'EXECUTING')
      AND NOT EXISTS (SELECT 1 FROM concurrency_slots s WHERE s.run_id = r.id
                      AND s.limit_id = 'climit_' || md5(r.environment_id || '/' || n.name))
    """
)


def _check_invariants(lids: list[str], runs: list[str]) -> None:
    flow.assert_consistent(*lids)
    with transaction() as session:
        found = session.execute(_OVER_BOUND, {"ids": lids, "runs": runs}).all()
    assert not found, found


def test_a_randomised_run_of_claims_finishes_and_cancels_keeps_every_invariant(
    project: ProjectKeys,
) -> None:
    """4 threads, one seed: runs of a task holding its own limit and a named one
    (``flow-two`` with ``flow-shared``), of tasks holding the named limit alone
    (``flow-shared-a``/``-b``) and of a per-key limit (``flow-keyed``, five keys) are
    executed, canceled waiting or admitted, canceled while executing, and swept, at
    random. After every step each counter equals its rows, no bound is exceeded and
    every admitted run holds a slot per limit; in the end every run is finished."""
    import random

    lids = [flow.limit_id(project, name)
            for name in ("task/flow-two", "flow-shared", "task/flow-keyed")]
    dice = random.Random(SEED)
    runs: list[str] = []
    for _ in range(60):
        kind = dice.choice(["both", "shared", "keyed"])
        if kind == "both":
            runs += flow.trigger(project, "flow-two", 1, payload=QUICK,
                                 concurrency=["flow-shared"])
        elif kind == "shared":
            runs += flow.trigger(project, dice.choice(["flow-shared-a", "flow-shared-b"]), 1,
                                 payload=QUICK)
        else:
            runs += flow.trigger(project, "flow-keyed", 1, payload=QUICK,
                                 concurrencyKey=f"k{dice.randrange(5)}")
    _check_invariants(lids, runs)
    final = {"COMPLETED", "CANCELED"}
    errors: list[BaseException] = []

    def unfinished() -> list[str]:
        return sorted(r for r, (status, _) in flow.admission_of(runs).items()
                      if status not in final)

    def cancel_while_executing(run_id: str, me: str) -> None:
        with transaction() as session:
            if isinstance(steps.claim_run(session, run_id, me), steps.Outcome):
                return
            if steps.begin_attempt(session, run_id, me, VERSION) is None:
                return
        _check_invariants(lids, runs)
        with transaction() as session:
            cancel_run(session, run_id)
        _check_invariants(lids, runs)
        with transaction() as session:
            run = session.get(Run, run_id)
            assert run is not None
            steps.finish_attempt(session, run, me, 1, 1, steps.Interrupted("canceled"))

    def worker(number: int) -> None:
        rng = random.Random(SEED * 10 + number)
        me = f"w{number}"
        try:
            for _ in range(400):
                left = unfinished()
                if not left:
                    return
                held = flow.admitted(left)
                roll = rng.random()
                if held and roll < 0.6:
                    execute(rng.choice(held), me)
                elif held and roll < 0.7:
                    cancel_while_executing(rng.choice(held), me)
                elif roll < 0.85:
                    with transaction() as session:
                        cancel_run(session, rng.choice(left))
                else:
                    sweep()
                _check_invariants(lids, runs)
        except BaseException as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [], errors
    # Whatever a fill skipped (a limit busy elsewhere) the sweep admits; finish the rest.
    for _ in range(len(runs)):
        if not unfinished():
            break
        sweep()
        for run_id in flow.admitted(unfinished()):
            execute(run_id)
        _check_invariants(lids, runs)
    assert unfinished() == []
    assert {flow.state(lid).running for lid in lids} == {0}
    _check_invariants(lids, runs)


# --- scale ---------------------------------------------------------------------------------


def _clone_runs(session: Any, template: str, prefix: str, keys: str, count: int) -> list[str]:
    """``count`` copies of run ``template`` (waiting, one key each as ``keys`` says: a SQL
    expression of ``g``, the copy's number), inserted in one statement."""
    columns = [c.name for c in Run.__table__.columns]
    values = {
        "id": f"'{prefix}' || lpad(g::text, 6, '0')",
        "concurrency_key": keys,
        "queued_at": "runs.queued_at + g * interval '1 microsecond'",
        "created_at": "runs.created_at + g * interval '1 microsecond'",
        "admission": "'waiting'",
    }
    select_list = ", ".join(values.get(c, f"runs.{c}") for c in columns)
    session.execute(text(
        f"INSERT INTO runs ({', '.join(columns)}) SELECT {select_list} "
        "FROM runs, generate_series(1, :n) g WHERE runs.id = :template"
    ), {"n": count, "template": template})
    return [f"{prefix}{g:06d}" for g in range(1, count + 1)]


def test_a_thousand_small_keys_progress_while_one_key_holds_ten_thousand_waiting_runs(
    project: ProjectKeys,
) -> None:
    lid = flow.limit_id(project, "task/flow-keyed")
    with transaction() as session:  # per key 1, no total: every key is its own pool
        limits.override(session, project.environment_ids["dev"], "task/flow-keyed",
                        total=100_000)
    # A run waiting behind another of its key: the model of the copies.
    _, template = flow.trigger(project, "flow-keyed", 2, payload=QUICK, concurrencyKey="seed")
    began = time.monotonic()
    with transaction() as session:  # the big key first: its head is the oldest
        big = _clone_runs(session, template, "run_flowbig", "'big'", 10_000)
        admission.enter(session, big)
    with transaction() as session:
        small = _clone_runs(session, template, "run_flowsmall", "'k' || g", 1_000)
        admission.enter(session, small)
    inserted = time.monotonic() - began
    # Entering the line admitted what one fill may (the big key's head; then the oldest
    # small keys); each sweep admits the next batch of small keys, none of the big key's,
    # each in one probe per admission whatever the big key's backlog.
    first = len(flow.admitted(small))
    assert first == admission.MAX_ADMITTED_PER_FILL
    sweeps = []
    while len(flow.admitted(small)) < len(small):
        began = time.monotonic()
        assert sweep() == admission.MAX_ADMITTED_PER_FILL
        sweeps.append(time.monotonic() - began)
    assert len(sweeps) == len(small) // admission.MAX_ADMITTED_PER_FILL - 1
    assert max(sweeps) < 5.0, (inserted, sweeps)  # each a few hundred ms when idle
    assert flow.admitted(big) == [big[0]]
    st = flow.state(lid)
    assert st.keys["big"] == (1, 9_999)
    assert st.running == 1 + len(small) + 1  # and the seed key's
    flow.assert_consistent(lid)
    # Ending the big key's running run admits its next one, at once.
    with transaction() as session:
        cancel_run(session, big[0])
    assert flow.admitted(big) == [big[1]]


# --- every commit path settles -----------------------------------------------------------


def test_runs_triggered_over_the_api_one_by_one_or_in_a_batch_stand_in_line(
    api: Any, project: ProjectKeys,
) -> None:
    """The api's commits settle like the workers' (the listener is on every session),
    and a batch item refused in its savepoint takes nothing of the items before it."""
    import json

    from tests.support import triggers

    lid = flow.limit_id(project, "task/flow-two")
    single = [triggers.via_api(api, project, "flow-two", payload=QUICK) for _ in range(3)]
    assert flow.admitted(single) == sorted(single[:2])
    created = api.post("/api/v3/batches", json={"runCount": 4}, headers=project.headers())
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    lines = [
        {"index": i, "task": "flow-two", "payload": json.dumps(QUICK),
         "options": {"payloadType": "application/json",
                     **({"concurrency": ["no-such-limit"]} if i == 2 else {})}}
        for i in range(4)
    ]
    streamed = api.post(
        f"/api/v3/batches/{batch_id}/items",
        content="".join(json.dumps(line) + "\n" for line in lines),
        headers={**project.headers(), "content-type": "application/x-ndjson"},
    )
    assert streamed.status_code == 200, streamed.text
    with transaction() as session:
        batch = [r for (r,) in session.execute(
            text("SELECT id FROM runs WHERE batch_id = :b ORDER BY created_at"), {"b": batch_id})]
    assert len(batch) == 3  # the refused item made no run
    # Every run of the batch stands in line (none left 'waiting' outside it).
    assert flow.admission_of(batch) == dict.fromkeys(batch, ("QUEUED", "waiting"))
    assert flow.state(lid) == flow.LimitState(2, 2, 4, {"": (2, 4)})
    flow.assert_consistent(lid)
    every = single + batch
    while flow.admitted(every):
        for run_id in flow.admitted(every):
            assert execute(run_id).status == "COMPLETED"
    assert set(flow.admission_of(every).values()) == {("COMPLETED", None)}
    flow.assert_consistent(lid)
    assert flow.state(lid).running == 0


@pytest.mark.parametrize(("attempts", "outcome"), [(3, "COMPLETED"), (1, "CRASHED")])
def test_a_dead_workers_run_keeps_its_slot_until_recovery_reruns_or_crashes_it(
    project: ProjectKeys, attempts: int, outcome: str
) -> None:
    lid = flow.limit_id(project, "task/flow-one")
    [run_id] = flow.trigger(project, "flow-one", 1, payload=QUICK, maxAttempts=attempts)
    [waiting] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    with transaction() as session:  # a worker takes it, then dies
        assert not isinstance(steps.claim_run(session, run_id, "dead"), steps.Outcome)
        assert steps.begin_attempt(session, run_id, "dead", VERSION) is not None
    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(
            heartbeat_at=func.now() - timedelta(minutes=5),
            dispatched_at=func.now() - timedelta(minutes=5)))
    flow.take_messages([run_id])  # the dead worker had received it
    assert sweep() == 0  # the dead worker's run still holds the slot
    assert flow.admitted([run_id, waiting]) == [run_id]
    with transaction() as session:
        assert lifecycle.redispatch_lost(session) == 1
    assert execute(run_id, "survivor").status == outcome
    # Re-executed (and completed) or crashed: either way the slot went to the next run.
    assert flow.admitted([run_id, waiting]) == [waiting]
    flow.assert_consistent(lid)


@pytest.mark.parametrize("result", [
    steps.Succeeded({"ok": 1}),
    steps.Failed({"message": "boom", "name": "ValueError"}),
    steps.Interrupted("timed_out"),
    steps.Interrupted("canceled"),
], ids=["completed", "failed", "timed-out", "interrupted"])
def test_a_run_canceled_while_executing_gives_its_slot_back_however_its_function_ends(
    project: ProjectKeys, result: Any
) -> None:
    lid = flow.limit_id(project, "task/flow-one")
    [run_id] = flow.trigger(project, "flow-one", 1, payload=QUICK, maxAttempts=1)
    [waiting] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    with transaction() as session:
        assert not isinstance(steps.claim_run(session, run_id, "w"), steps.Outcome)
        assert steps.begin_attempt(session, run_id, "w", VERSION) is not None
    with transaction() as session:
        cancel_run(session, run_id)
    assert flow.admitted([run_id, waiting]) == [run_id]  # its function still runs
    with transaction() as session:
        run = session.get(Run, run_id)
        assert run is not None
        steps.finish_attempt(session, run, "w", 1, 5, result)
    assert flow.admission_of([run_id])[run_id] == ("CANCELED", None)
    assert flow.admitted([run_id, waiting]) == [waiting]
    flow.assert_consistent(lid)


def test_a_settlement_never_holds_a_slot_row_while_waiting_for_a_limit_the_sweep_holds(
    project: ProjectKeys,
) -> None:
    """A run canceled while executing, holding two limits; its worker reports the function
    stopped only after its heartbeat went stale, just as the sweep mends the stale slot.
    The test holds the lower limit: the worker's settlement queues for it, the sweep
    skips it and takes the higher one, and mends that one's slots. Neither may wait for
    the other: the settlement touches a limit's rows only once it holds the limit."""
    one = flow.limit_id(project, "task/flow-one")
    shared = flow.limit_id(project, "flow-shared")
    low = min(one, shared)
    [run_id] = _two_limit_runs(project, 1)
    with transaction() as session:
        assert not isinstance(steps.claim_run(session, run_id, "w"), steps.Outcome)
        assert steps.begin_attempt(session, run_id, "w", VERSION) is not None
    with transaction() as session:
        cancel_run(session, run_id)
    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(
            heartbeat_at=func.now() - timedelta(minutes=5)))
    errors: list[BaseException] = []

    def stopped() -> None:
        try:
            with transaction() as session:
                lifecycle.attempt_stopped(session, run_id, "w")
        except BaseException as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)

    def mend() -> None:
        try:
            sweep()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    with limit_row_locked(low):
        worker = threading.Thread(target=stopped)
        worker.start()
        wait_for(lambda: lock_waiters() >= 1, what="the settlement waiting for the lower limit")
        sweeper = threading.Thread(target=mend)
        sweeper.start()
        # It must not wait for the settlement's rows: done, or seen waiting on a lock.
        wait_for(lambda: not sweeper.is_alive() or lock_waiters() >= 2,
                 what="the sweep to finish or to wait")
        assert not sweeper.is_alive()
    worker.join(10)
    sweeper.join(10)
    assert errors == []
    assert flow.admitted([run_id]) == []
    flow.assert_consistent(one, shared)


def test_delayed_runs_enter_the_line_when_promoted(project: ProjectKeys) -> None:
    from reprise_server.shared.timers.service import promote_due_runs

    lid = flow.limit_id(project, "task/flow-one")
    [now] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    later = flow.trigger(project, "flow-one", 2, payload=QUICK, delay="1h")
    assert flow.admission_of(later) == dict.fromkeys(later, ("DELAYED", None))
    with transaction() as session:
        session.execute(update(Run).where(Run.id.in_(later)).values(
            delayed_until=func.now() - timedelta(seconds=1)))
    with transaction() as session:
        assert promote_due_runs(session).promoted == 2
    assert flow.admission_of(later) == dict.fromkeys(later, ("QUEUED", "waiting"))
    assert flow.state(lid) == flow.LimitState(1, 1, 2, {"": (1, 2)})
    execute(now)
    assert len(flow.admitted(later)) == 1
    flow.assert_consistent(lid)


def test_a_savepoint_rolled_back_after_runs_entered_the_line_keeps_their_entries(
    project: ProjectKeys,
) -> None:
    """A batch makes each item in a savepoint: one refused after others entered the line
    takes its own writes back, not the admission work the others recorded."""
    from reprise_server.shared.projects.service import AuthContext
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run

    lid = flow.limit_id(project, "task/flow-one")
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    class Refused(Exception):
        pass

    def refused_item(session: Any) -> None:
        with session.begin_nested():
            trigger_run(session, auth, "flow-one", QUICK, TriggerOptions())
            raise Refused

    with transaction() as session:
        ids = [trigger_run(session, auth, "flow-one", QUICK, TriggerOptions()).run.id
               for _ in range(2)]
        with pytest.raises(Refused):
            refused_item(session)
    # One admitted, one in line (queued in one transaction: the same rank, either first).
    assert set(flow.admission_of(ids).values()) == {("QUEUED", None), ("QUEUED", "waiting")}
    assert flow.state(lid) == flow.LimitState(1, 1, 1, {"": (1, 1)})
    flow.assert_consistent(lid)


def test_a_held_back_run_that_was_claimed_before_is_never_taken_as_abandoned(
    project: ProjectKeys,
) -> None:
    """A run claimed once keeps its last heartbeat when it goes back to wait (a worker
    without its task parked it for a version): once that heartbeat is old, a stray
    delivery must still find it held back, not take it over as a dead worker's run."""
    env = project.environment_ids["dev"]
    lid = flow.limit_id(project, "task/flow-one")
    [again] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    with transaction() as session:
        assert not isinstance(steps.claim_run(session, again, "w"), steps.Outcome)
        assert lifecycle.park_pending_version(session, again) is not None
    [holder] = flow.trigger(project, "flow-one", 1, payload=QUICK)
    with transaction() as session:
        assert lifecycle.release_pending_version(session, env, ["flow-one"], 10) == [again]
    assert flow.admission_of([again])[again] == ("QUEUED", "waiting")
    with transaction() as session:
        session.execute(update(Run).where(Run.id == again).values(
            heartbeat_at=func.now() - timedelta(minutes=5)))
    assert execute(again).detail == "held back: waiting"
    assert flow.admitted([again, holder]) == [holder]
    assert execute(holder).status == "COMPLETED"
    assert execute(again).status == "COMPLETED"
    flow.assert_consistent(lid)


def test_a_registration_declaring_nothing_new_writes_and_locks_no_limit(
    project: ProjectKeys,
) -> None:
    """Every worker process registers at boot in every environment it serves: declaring
    the same bounds again must not wait for (or fill) limits a settlement holds."""
    env = project.environment_ids["dev"]
    one = flow.limit_id(project, "task/flow-one")
    declared = limits.read_declarations(
        {"flow-one": {"concurrency": [{"name": "task/flow-one", "total": 1}]}}
    )
    with transaction() as session:
        before = session.execute(text(
            "SELECT total_base, per_key_base, updated_at FROM concurrency_limits WHERE id = :id"
        ), {"id": one}).one()
    assert (before.total_base, before.per_key_base) == (1, None)
    with limit_row_locked(one), transaction() as session:
        session.execute(text("SET LOCAL lock_timeout = '2s'"))
        limits.register_declarations(session, env, declared, {})
    with transaction() as session:
        after = session.execute(text(
            "SELECT updated_at FROM concurrency_limits WHERE id = :id"), {"id": one}).one()
    assert after.updated_at == before.updated_at
