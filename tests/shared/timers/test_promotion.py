"""A timer promotes by compare-and-set on ``(run, token)``: stale, duplicate and early
timers are harmless, and a reschedule racing a promotion has one linearizable outcome."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from reprise_server.shared.db import db_now, discard_after_commit, transaction
from reprise_server.shared.durations import parse_datetime
from reprise_server.shared.runs.service import cancel_run
from reprise_server.shared.timers.service import promote_run
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, lock_waiters, run_row, wait_for, wait_for_status
from tests.support.tasks import SEEN
from tests.support.timers import (
    InThread,
    ParkedTimers,
    TimerOutcomes,
    backdate,
    reschedule,
)


def promote(run_id: str, token: int) -> bool:
    """What a timer does, minus the dispatch: the run stays QUEUED for the assertions."""
    with transaction() as session:
        promoted = promote_run(session, run_id, token) is not None
        if promoted:
            discard_after_commit(session)
        return promoted


def test_a_run_within_the_horizon_is_armed_at_trigger_and_a_far_one_is_not(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    near = triggers.in_db(project, delay="1m")
    far = triggers.in_db(project, delay="1h")
    [(run_id, token, eta)] = parked_timers.timers()
    assert (run_id, token) == (near, 1)
    near_row = run_row(near)
    assert eta is not None
    assert parse_datetime(eta) == near_row.delayed_until
    assert near_row.timer_armed_token == 1
    assert run_row(far).timer_armed_token is None


def test_a_due_timer_promotes_once_and_moves_the_token_on(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    run_id = triggers.in_db(project, delay="1h", ttl="10m")
    backdate(run_id, "delayed_until")
    assert promote(run_id, 1)
    run = run_row(run_id)
    assert run.status == "QUEUED"
    assert run.schedule_token == 2
    assert run.queued_at >= run.delayed_until
    assert run.ttl_expires_at == run.queued_at + timedelta(minutes=10)
    # The same timer again (a duplicate or a redelivery) does nothing and re-arms nothing.
    assert not promote(run_id, 1)
    assert run_row(run_id).schedule_token == 2
    assert parked_timers.timers() == []


def test_an_early_timer_rearms_itself_for_the_time_left_on_the_database_clock(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    run_id = triggers.in_db(project, delay="2m")
    [(_, token, _)] = parked_timers.timers()
    parked_timers.client.delete(parked_timers.queue)
    assert not promote(run_id, token)
    assert run_row(run_id).status == "DELAYED"
    [(rearmed_id, rearmed_token, eta)] = parked_timers.timers()
    assert (rearmed_id, rearmed_token) == (run_id, token)
    # Re-armed by countdown from the database's remaining time: due around delayed_until.
    assert eta is not None
    assert abs(parse_datetime(eta) - run_row(run_id).delayed_until) < timedelta(seconds=30)


def test_a_stale_timer_neither_promotes_nor_rearms(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    run_id = triggers.in_db(project, delay="1h")
    with transaction() as session:
        reschedule(session, run_id, db_now(session) + timedelta(hours=2))
    backdate(run_id, "delayed_until")
    assert not promote(run_id, 1)
    run = run_row(run_id)
    assert (run.status, run.schedule_token) == ("DELAYED", 2)
    assert parked_timers.timers() == []


def test_reschedule_holding_the_row_while_the_old_timer_fires_wins(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    """Reschedule first: it holds the row while the old timer (now due) tries to promote.
    The timer does not wait for the row (a timer never holds a control thread behind a
    lock): it does nothing, arms nothing again, and the run waits for its new time."""
    run_id = triggers.in_db(project, delay="1h")
    backdate(run_id, "delayed_until")
    rescheduled = threading.Event()
    commit = threading.Event()

    def reschedule_and_hold() -> Any:
        with transaction() as session:
            moved = reschedule(session, run_id, db_now(session) + timedelta(hours=1))
            rescheduled.set()
            assert commit.wait(15)
            return moved.schedule_token

    holder = InThread(reschedule_and_hold)
    assert rescheduled.wait(15)
    try:
        assert promote(run_id, 1) is False  # at once: the row is held
        assert parked_timers.timers() == []
    finally:
        commit.set()
    assert holder.result() == 2
    run = run_row(run_id)
    assert (run.status, run.schedule_token, run.queued_at) == ("DELAYED", 2, None)
    # Only the new token's promotion can fire it, once due.
    backdate(run_id, "delayed_until")
    assert promote(run_id, 2)
    assert run_row(run_id).status == "QUEUED"


def test_promotion_committing_while_a_reschedule_waits_rejects_the_reschedule(
    project: ProjectKeys, parked_timers: ParkedTimers
) -> None:
    """Promotion first: the timer holds the row while a reschedule arrives. The
    reschedule's compare-and-set sees QUEUED and is rejected ("not delayed"): never an
    accepted reschedule followed by a start at the old time."""
    run_id = triggers.in_db(project, delay="1h")
    backdate(run_id, "delayed_until")
    promoted = threading.Event()
    commit = threading.Event()

    def promote_and_hold() -> bool:
        with transaction() as session:
            run = promote_run(session, run_id, 1)
            discard_after_commit(session)
            promoted.set()
            assert commit.wait(15)
            return run is not None

    holder = InThread(promote_and_hold)
    assert promoted.wait(15)

    def reschedule_later() -> Any:
        with transaction() as session:
            return reschedule(session, run_id, db_now(session) + timedelta(hours=1))

    mover = InThread(reschedule_later)
    wait_for(lambda: lock_waiters() >= 1, what="the reschedule to wait on the timer's row lock")
    commit.set()
    assert holder.result() is True
    assert mover.result() is None
    run = run_row(run_id)
    assert (run.status, run.schedule_token) == ("QUEUED", 2)


def test_cancel_of_a_delayed_run_leaves_its_timer_harmless(
    project: ProjectKeys, parked_timers: ParkedTimers, timer_outcomes: TimerOutcomes,
    celery_worker: Any,
) -> None:
    run_id = triggers.in_db(project, delay="1s")
    [raw] = parked_timers.raw()
    with transaction() as session:
        assert cancel_run(session, run_id) is not None
    parked_timers.deliver(raw)  # the timer still exists and fires at its time
    wait_for(lambda: timer_outcomes.of(run_id), what="the timer to fire")
    assert timer_outcomes.of(run_id) == [(1, False)]
    run = run_row(run_id)
    assert (run.status, run.attempt_count, run.queued_at) == ("CANCELED", 0, None)


def test_the_same_eta_message_delivered_twice_promotes_once(
    project: ProjectKeys, parked_timers: ParkedTimers, timer_outcomes: TimerOutcomes,
    celery_worker: Any,
) -> None:
    run_id = triggers.in_db(project, delay="1s", payload="twice")
    [raw] = parked_timers.raw()
    parked_timers.deliver(raw, copies=2)
    wait_for(lambda: len(timer_outcomes.of(run_id)) == 2, what="both deliveries to run")
    assert sorted(timer_outcomes.of(run_id)) == [(1, False), (1, True)]
    run = wait_for_status(run_id, "COMPLETED")
    assert run.attempt_count == 1
    assert len(SEEN[run_id]) == 1
