"""The sweep's decision (:func:`plan_tick`) on a simulated clock: a beat sweeping every
two seconds through daylight-saving changes runs each tick once, the ones cron users
expect; after an outage it runs only the latest missed tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reprise_server.shared.schedules.cron import Cron
from reprise_server.shared.schedules.service import plan_tick

NEW_YORK = "America/New_York"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def sweep_through(
    cron: Cron, start: datetime, end: datetime, every: timedelta = timedelta(seconds=2),
    down: tuple[datetime, datetime] | None = None,
) -> list[datetime]:
    """The ticks a beat sweeping every ``every`` from ``start`` to ``end`` runs (none
    while ``down``), with the schedule created at ``start``."""
    due = cron.next_after(start)
    fired: list[datetime] = []
    now = start
    while now < end and due is not None:
        # Jump straight to the next sweep at or after the due tick (sweeps in between
        # find nothing due), or to the end of an outage.
        if now < due:
            now = start + every * -(-(due - start) // every)
        if down and down[0] <= now < down[1]:
            now = down[1]
        if now >= end:
            break
        plan = plan_tick(cron, due, now)
        fired.append(plan.tick)
        due = plan.next_tick_at
    return fired


@pytest.mark.parametrize("zone", [NEW_YORK, "Europe/London", "Australia/Sydney"])
def test_a_daily_job_runs_once_a_day_through_both_changes(zone: str) -> None:
    cron = Cron.parse("30 1 * * *", zone)
    fired = sweep_through(cron, utc(2026, 1, 1), utc(2027, 1, 1))
    local_days = [tick.astimezone(cron.zone).date() for tick in fired]
    assert len(fired) == 365
    assert len(set(local_days)) == 365  # one run on every local day, never two
    assert fired == sorted(fired)


def test_new_york_spring_forward_day_by_day() -> None:
    cron = Cron.parse("30 2 * * *", NEW_YORK)
    fired = sweep_through(cron, utc(2026, 3, 6, 12), utc(2026, 3, 10, 12))
    # 02:30 does not exist on 03-08: that day's run is at 03:00 EDT (07:00Z).
    assert fired == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30),
                     utc(2026, 3, 10, 6, 30)]


def test_new_york_fall_back_hourly_follows_the_wall_clock() -> None:
    cron = Cron.parse("0 * * * *", NEW_YORK)
    fired = sweep_through(cron, utc(2026, 11, 1, 3, 30), utc(2026, 11, 1, 8, 30))
    # 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST: 01:00 comes twice, so its tick.
    assert fired == [utc(2026, 11, 1, h) for h in (4, 5, 6, 7, 8)]
    assert [t.astimezone(cron.zone).hour for t in fired] == [0, 1, 1, 2, 3]


def test_an_outage_across_the_change_runs_only_the_latest_missed_tick() -> None:
    cron = Cron.parse("*/15 * * * *", NEW_YORK)
    down = (utc(2026, 11, 1, 4, 50), utc(2026, 11, 1, 7, 20, 1))  # beat down 2.5 hours
    fired = sweep_through(cron, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8), down=down)
    before = [t for t in fired if t < down[0]]
    after = [t for t in fired if t >= down[0]]
    assert before == [utc(2026, 11, 1, 4, 15), utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 4, 45)]
    # The first sweep back runs the 07:15Z tick (the latest missed one) only, then on time.
    assert after == [utc(2026, 11, 1, 7, 15), utc(2026, 11, 1, 7, 30), utc(2026, 11, 1, 7, 45)]


def test_a_late_sweep_in_the_repeated_hour_does_not_rerun_the_daily_tick() -> None:
    cron = Cron.parse("30 1 * * *", NEW_YORK)
    due = utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    # The sweep is 40 minutes late: 01:10 EST, "before" 01:30 on the wall clock again.
    plan = plan_tick(cron, due, utc(2026, 11, 1, 6, 10))
    assert plan.tick == due
    assert plan.next_tick_at == utc(2026, 11, 2, 6, 30)
