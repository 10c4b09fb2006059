"""The sweep: promotes overdue runs, arms runs entering the horizon, replaces lost timers,
and is safe to run twice at once."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import redis

from reprise_server.shared.db import db_now, discard_after_commit, transaction
from reprise_server.shared.settings import get_settings
from reprise_server.shared.timers.service import SweepResult, promote_due_runs
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for, wait_for_status
from tests.support.statements import captured_statements
from tests.support.tasks import SEEN
from tests.support.timers import (
    InThread,
    ParkedTimers,
    TimerOutcomes,
    buffers_read,
    explain_analyze,
    held_timer_tokens,
    insert_bulk_runs,
    reschedule,
    sql,
    wait_until_due,
)


def sweep(batch_size: int = 5000) -> SweepResult:
    with transaction() as session:
        return promote_due_runs(session, batch_size)


def test_the_sweep_arms_runs_entering_the_horizon_once(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    entering = triggers.in_db(project, delay="1h")
    far = triggers.in_db(project, delay="2h")
    sql("UPDATE runs SET delayed_until = now() + interval '1 minute' WHERE id = :id", id=entering)
    assert sweep() == SweepResult(promoted=0, armed=1)
    [(run_id, token, _)] = parked_timers.timers()
    assert (run_id, token) == (entering, 1)
    assert run_row(entering).timer_armed_token == 1
    assert run_row(far).timer_armed_token is None
    # Armed tokens are not armed again; a reschedule within the horizon arms itself.
    assert sweep() == SweepResult(promoted=0, armed=0)
    with transaction() as session:
        reschedule(session, entering, db_now(session) + timedelta(minutes=2))
    assert [t[:2] for t in parked_timers.timers()] == [(entering, 1), (entering, 2)]
    assert sweep() == SweepResult(promoted=0, armed=0)


def test_the_sweep_promotes_overdue_runs_in_batches_and_leaves_the_rest(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    overdue = [triggers.in_db(project, delay="1h", publish=False) for _ in range(7)]
    later = triggers.in_db(project, delay="1h", publish=False)
    # Equal due times on purpose: the batch walk must not stall on ties.
    sql("UPDATE runs SET delayed_until = now() - interval '1 second' WHERE id = ANY(:ids)",
        ids=overdue)
    assert sweep(batch_size=3).promoted == 7
    for run_id in overdue:
        run = run_row(run_id)
        # Promoted (a live session worker may already be executing it), token moved on.
        assert run.status != "DELAYED"
        assert run.schedule_token == 2
        assert run.queued_at >= run.delayed_until
    assert run_row(later).status == "DELAYED"
    assert sweep().promoted == 0


def test_a_timer_lost_with_redis_is_replaced_by_one_sweep(
    project: ProjectKeys, parked_timers: ParkedTimers, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, delay="1s", payload="flushed")
    assert len(parked_timers.timers()) == 1
    broker_redis = redis.Redis.from_url(get_settings().redis_url)
    broker_redis.flushdb()
    broker_redis.close()
    assert parked_timers.timers() == []
    wait_until_due(run_id)
    assert run_row(run_id).status == "DELAYED"  # nothing left that could promote it
    assert sweep().promoted == 1
    assert sweep().promoted == 0
    run = wait_for_status(run_id, "COMPLETED")
    assert run.attempt_count == 1
    assert len(SEEN[run_id]) == 1


def test_two_sweeps_at_once_promote_each_run_once(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    run_ids = [triggers.in_db(project, delay="1h", publish=False) for _ in range(40)]
    sql("UPDATE runs SET delayed_until = now() - make_interval(secs => random()) "
        "WHERE id = ANY(:ids)", ids=run_ids)
    start = threading.Barrier(2)

    def one_sweep() -> int:
        start.wait(15)
        return sweep(batch_size=3).promoted

    first, second = InThread(one_sweep), InThread(one_sweep)
    assert first.result() + second.result() == 40
    tokens = sql("SELECT queued_at IS NOT NULL, schedule_token, count(*) FROM runs "
                 "WHERE id = ANY(:ids) GROUP BY 1, 2", ids=run_ids).all()
    assert [tuple(row) for row in tokens] == [(True, 2, 40)]


def test_a_run_rescheduled_200_times_from_threads_is_promoted_once_at_the_last_time(
    project: ProjectKeys, timer_outcomes: TimerOutcomes, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, delay="1h", payload="many")
    start = threading.Barrier(20)
    accepted: list[int] = []
    guard = threading.Lock()

    def reschedule_ten_times() -> None:
        start.wait(15)
        for _ in range(10):
            with transaction() as session:
                due = db_now(session) + timedelta(seconds=1.5 + random.random())
                moved = reschedule(session, run_id, due)
            if moved is not None:
                with guard:
                    accepted.append(moved.schedule_token)

    threads = [InThread(reschedule_ten_times) for _ in range(20)]
    for thread in threads:
        thread.result(timeout=60)
    run = wait_for_status(run_id, "COMPLETED")
    # Every accepted reschedule bumped the token once, the promotion once more.
    assert run.schedule_token == 1 + len(accepted) + 1
    assert run.queued_at >= run.delayed_until  # promoted at the last accepted time
    # Every accepted reschedule armed a timer. Each fired, or was let go (acknowledged
    # unrun) once a newer one for the run had arrived: none stays held. Exactly one
    # promoted: the newest's.
    wait_for(lambda: held_timer_tokens(run_id) == [], timeout=30,
             what="no timer of the run held any more")
    promotions = [token for token, promoted in timer_outcomes.of(run_id) if promoted]
    assert promotions == [max(accepted)]
    assert max(accepted) not in timer_outcomes.let_go_of(run_id)
    assert run.attempt_count == 1
    assert len(SEEN[run_id]) == 1


def test_an_idle_sweep_is_one_probe_of_the_delayed_index(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    insert_bulk_runs(project, 20000, "DELAYED", "0 seconds")  # due a day or more ahead
    with captured_statements() as seen:
        assert sweep() == SweepResult(promoted=0, armed=0)
    [(statement, params)] = seen
    plan = explain_analyze(statement, params)
    assert "ix_runs_delayed_due" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert buffers_read(plan) <= 3, plan


def test_a_promotion_batch_probes_keys_not_the_table(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    insert_bulk_runs(project, 20000, "DELAYED", "0 seconds")
    overdue = [triggers.in_db(project, delay="1h", publish=False) for _ in range(3)]
    sql("UPDATE runs SET delayed_until = now() - interval '1 second' WHERE id = ANY(:ids)",
        ids=overdue)
    with captured_statements() as seen, transaction() as session:
        assert promote_due_runs(session).promoted == 3
        session.rollback()
        discard_after_commit(session)
    [(statement, params)] = [(s, p) for s, p in seen if "UPDATE runs" in s][:1]
    plan = explain_analyze(statement, params)
    assert "ix_runs_delayed_due" in plan, plan
    assert "pk_runs" in plan, plan  # the update itself: primary-key probes
    assert "Seq Scan" not in plan, plan
    assert "rows=3" in plan, plan
