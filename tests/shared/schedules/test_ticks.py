"""Beat fires schedules from Postgres: one run per tick however sweeps race, the latest
missed tick only after an outage, nothing while deactivated, the scheduled payload."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta

import pytest

from reprise_server.shared.db import transaction
from reprise_server.shared.schedules.cron import Cron
from reprise_server.shared.schedules.service import fire_due_schedules, set_active
from tests.support.fixtures import wait_for
from tests.support.schedules import Scheduler, fire
from tests.support.timers import InThread, db_clock


def test_a_due_tick_creates_one_queued_run_with_the_scheduled_payload(scheduler: Scheduler) -> None:
    sid = scheduler.create("*/2 * * * * *", externalId="user_1", timezone="Europe/Paris")
    scheduler.make_due(sid)
    due = scheduler.row(sid).next_tick_at
    assert fire() == 1

    [(_run_id, tick, payload)] = scheduler.runs(sid)
    assert tick == due
    cron = Cron.parse("*/2 * * * * *", "Europe/Paris")
    expected_upcoming = cron.upcoming(tick, 10)
    assert payload == {
        "scheduleId": sid,
        "type": "IMPERATIVE",
        "timestamp": tick.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "timezone": "Europe/Paris",
        "externalId": "user_1",
        "upcoming": [t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in expected_upcoming],
    }
    after = scheduler.row(sid)
    assert after.last_tick_at == tick
    assert after.next_tick_at is not None
    assert after.next_tick_at > tick  # (not "> now": with a 2 s cron, now may be past it)

    # The next tick (two seconds on) carries this one as lastTimestamp.
    wait_for(lambda: db_clock() >= after.next_tick_at, what="the next tick")
    assert fire() == 1
    second = scheduler.runs(sid)[-1][2]
    assert second["lastTimestamp"] == payload["timestamp"]


def test_two_racing_sweeps_create_one_run_for_the_tick(scheduler: Scheduler) -> None:
    """The first sweep holds the schedule's row (its tick's run inserted, not committed);
    the second, at that very moment, skips the locked row instead of firing it too."""
    sid = scheduler.create("*/5 * * * *")
    scheduler.make_due(sid)
    claimed, release = threading.Event(), threading.Event()

    def first_sweep() -> int:
        with transaction() as session:
            fired = fire_due_schedules(session)
            claimed.set()
            assert release.wait(15)
            return fired

    first = InThread(first_sweep)
    assert claimed.wait(15)
    started = time.monotonic()
    assert fire() == 0  # did not wait for the first sweep's lock, and fired nothing
    assert time.monotonic() - started < 5
    release.set()
    assert first.result() == 1
    assert fire() == 0
    assert len(scheduler.runs(sid)) == 1


def test_a_tick_already_fired_gets_no_second_run_even_if_the_schedule_goes_back_to_it(
    scheduler: Scheduler,
) -> None:
    """Postgres's unique (schedule, tick) is the last guard: a sweep working from a stale
    next tick (a beat restarted mid-way, an update racing it) cannot run a tick twice."""
    sid = scheduler.create("*/5 * * * *")
    scheduler.make_due(sid)
    assert fire() == 1
    [(_, tick, _)] = scheduler.runs(sid)
    from tests.support.timers import sql

    sql("UPDATE schedules SET next_tick_at = :t WHERE id = :id", t=tick, id=sid)
    assert fire() == 0
    assert len(scheduler.runs(sid)) == 1
    assert scheduler.row(sid).next_tick_at > db_clock()


@pytest.mark.slow
def test_a_schedule_ticking_every_two_seconds_has_one_run_per_tick_with_two_sweepers(
    scheduler: Scheduler,
) -> None:
    """Two sweepers (as two beats would) loop over the same schedule for a few ticks."""
    sid = scheduler.create("*/2 * * * * *")
    stop = threading.Event()

    def sweeper() -> int:
        fired = 0
        while not stop.is_set():
            fired += fire()
            time.sleep(0.05)
        return fired

    sweepers = [InThread(sweeper), InThread(sweeper)]
    wait_for(lambda: len(scheduler.runs(sid)) >= 3, timeout=20, what="three ticks")
    stop.set()
    fired = sum(s.result() for s in sweepers)
    ticks = [tick for _, tick, _ in scheduler.runs(sid)]
    assert fired == len(ticks) >= 3
    assert len(set(ticks)) == len(ticks)  # one run per tick
    assert all(tick.second % 2 == 0 and tick.microsecond == 0 for tick in ticks)
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(ticks))


def test_after_an_outage_only_the_latest_missed_tick_runs(scheduler: Scheduler) -> None:
    sid = scheduler.create("* * * * *")
    scheduler.make_due(sid, seconds_ago=3 * 3600)  # beat was down for three hours
    assert fire() == 1
    [(_, tick, payload)] = scheduler.runs(sid)
    now = db_clock()
    latest = Cron.parse("* * * * *").latest_at_or_before(now)
    assert latest is not None
    assert now - timedelta(minutes=1) < tick <= now
    assert tick in (latest, latest - timedelta(minutes=1))  # the minute may turn meanwhile
    assert "lastTimestamp" not in payload
    assert scheduler.row(sid).next_tick_at > now
    assert fire() == 0


def test_a_deactivated_schedule_does_not_tick_and_resumes_from_now(scheduler: Scheduler) -> None:
    sid = scheduler.create("* * * * *")
    with transaction() as session:
        off = set_active(session, scheduler.auth, sid, False)
        assert (off.active, off.next_tick_at) == (False, None)
    from tests.support.timers import sql

    # Even with a tick time in the past left on it, an inactive schedule is not due.
    sql("UPDATE schedules SET next_tick_at = now() - interval '1 hour' WHERE id = :id", id=sid)
    assert fire() == 0
    assert scheduler.runs(sid) == []
    with transaction() as session:
        on = set_active(session, scheduler.auth, sid, True)
    assert on.active
    assert on.next_tick_at is not None
    assert on.next_tick_at > db_clock()
    assert fire() == 0  # no catch-up for the hour it was off


def test_a_tick_run_executes_on_a_worker(scheduler: Scheduler, celery_worker: object) -> None:
    from tests.support.fixtures import wait_for_status

    sid = scheduler.create("0 0 * * *")
    scheduler.make_due(sid)
    assert fire(publish=True) == 1
    [(run_id, _, payload)] = scheduler.runs(sid)
    run = wait_for_status(run_id, "COMPLETED")
    assert run.output["payload"] == payload
    assert run.triggered_by == "schedule"
