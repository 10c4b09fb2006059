"""Cron ticks as UTC instants: validation errors that name the value, and daylight-saving
transitions as cron users expect (Debian cron's rules, which cronsim follows)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from reprise_server.shared.schedules.cron import Cron, InvalidCron, InvalidTimezone, timezones

NEW_YORK = "America/New_York"
# 2026 in New York: clocks spring forward 2026-03-08 02:00 EST -> 03:00 EDT, and fall back
# 2026-11-01 02:00 EDT -> 01:00 EST.


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def chain(cron: Cron, start: datetime, count: int) -> list[datetime]:
    """The ticks the sweep fires one after the other (each next tick from the last)."""
    ticks, current = [], start
    for _ in range(count):
        nxt = cron.next_after(current)
        assert nxt is not None
        ticks.append(nxt)
        current = nxt
    return ticks


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "bad minute"),
        ("* 24 * * *", "bad hour"),
        ("0 0 30 2 *", "bad day-of-month"),
        ("* * *", "wrong number of fields"),
        ("", "it is empty"),
        ("every hour", "wrong number of fields"),
    ],
)
def test_an_invalid_expression_is_refused_naming_it(expression: str, reason: str) -> None:
    with pytest.raises(InvalidCron) as caught:
        Cron.parse(expression)
    assert caught.value.status_code == 400
    assert caught.value.message == f"Invalid cron expression '{expression}': {reason}"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "EST5", "", "localtime", "../etc/passwd"])
def test_an_unknown_timezone_is_refused_naming_it(zone: str) -> None:
    if zone == "":  # an empty timezone is the default, UTC
        assert Cron.parse("0 * * * *", zone).timezone == "UTC"
        return
    if zone in timezones():
        pytest.skip(f"{zone} is a real zone in this tz database")
    with pytest.raises(InvalidTimezone) as caught:
        Cron.parse("0 * * * *", zone)
    assert caught.value.status_code == 400
    assert f"'{zone}'" in caught.value.message


def test_timezones_list_utc_first_then_sorted_iana_names() -> None:
    zones = timezones()
    assert zones[0] == "UTC"
    assert zones[1:] == sorted(zones[1:])
    assert {"Europe/London", "America/New_York", "Asia/Tokyo"} <= set(zones)
    assert "UTC" not in timezones(include_utc=False)


def test_ticks_are_strictly_after_the_instant_and_in_utc() -> None:
    cron = Cron.parse("0 * * * *", "Asia/Kolkata")  # UTC+05:30: on the half hour in UTC
    assert cron.next_after(utc(2026, 1, 1, 10, 30)) == utc(2026, 1, 1, 11, 30)
    assert cron.latest_at_or_before(utc(2026, 1, 1, 10, 30)) == utc(2026, 1, 1, 10, 30)
    assert cron.latest_at_or_before(utc(2026, 1, 1, 10, 29, 59)) == utc(2026, 1, 1, 9, 30)
    assert cron.describe() == "At the start of every hour"


def test_seconds_in_a_sixth_leading_field() -> None:
    cron = Cron.parse("*/5 * * * * *")
    assert cron.upcoming(utc(2026, 1, 1, 0, 0, 1), 3) == [
        utc(2026, 1, 1, 0, 0, 5), utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 15)
    ]


def test_a_daily_job_in_the_skipped_hour_runs_right_after_clocks_spring_forward() -> None:
    cron = Cron.parse("30 2 * * *", NEW_YORK)
    ticks = chain(cron, utc(2026, 3, 6, 12), 4)
    # 02:30 EST = 07:30Z; on 03-08 02:30 does not exist: it runs at 03:00 EDT = 07:00Z.
    assert ticks == [
        utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30),
        utc(2026, 3, 10, 6, 30),
    ]


def test_a_daily_job_in_the_repeated_hour_runs_once_when_clocks_fall_back() -> None:
    cron = Cron.parse("30 1 * * *", NEW_YORK)
    ticks = chain(cron, utc(2026, 10, 31, 0), 3)
    # 01:30 EDT (05:30Z) on 11-01, the first of the two 01:30s, and never the second.
    assert ticks == [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # A sweep that asks from inside the repeated hour (01:10 EST = 06:10Z, after the tick
    # fired at 05:30Z) gets tomorrow's tick, not 01:30 EDT again.
    assert cron.next_after(utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 2, 6, 30)
    assert cron.latest_at_or_before(utc(2026, 11, 1, 6, 40)) == utc(2026, 11, 1, 5, 30)


def test_an_hourly_job_follows_the_wall_clock_through_both_transitions() -> None:
    cron = Cron.parse("0 * * * *", NEW_YORK)
    spring = chain(cron, utc(2026, 3, 8, 5, 30), 3)  # 00:30 EST
    # 01:00 EST, then 03:00 EDT: the 02:00 that does not exist has no tick.
    assert spring == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)]
    fall = chain(cron, utc(2026, 11, 1, 4, 30), 3)  # 00:30 EDT
    # 01:00 EDT, 01:00 EST (the hour happens twice, so does its tick), 02:00 EST.
    assert fall == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(fall))


def test_a_daily_job_keeps_its_local_time_across_the_change() -> None:
    cron = Cron.parse("0 9 * * *", "Europe/London")
    ticks = chain(cron, utc(2026, 3, 28, 12), 2)  # BST starts 2026-03-29
    assert ticks == [utc(2026, 3, 29, 8), utc(2026, 3, 30, 8)]
    assert cron.latest_at_or_before(utc(2026, 3, 29, 7, 59)) == utc(2026, 3, 28, 9)
