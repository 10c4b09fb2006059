from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reprise_server.shared.durations import (
    DelayPolicy,
    DurationError,
    format_duration,
    iso,
    parse_delay,
    parse_duration,
    parse_ttl,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1d", 86400),
        ("6h", 21600),
        ("10m", 600),
        ("11s", 11),
        ("1hr", 3600),
        ("1h30m", 5400),
        ("2w", 1209600),
        ("1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 245),
    ],
)
def test_duration_grammar(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "1.5h", "-1h", "1h 30m", "abc", "1H"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


LENIENT = DelayPolicy(numbers=True, past="now")
STRICT = DelayPolicy(numbers=False, past="reject")


def test_delay_accepts_durations_dates_and_seconds() -> None:
    assert parse_delay("1h", NOW, LENIENT) == NOW + timedelta(hours=1)
    assert parse_delay("2030-01-01T00:00:00.000Z", NOW, LENIENT) == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_delay(30, NOW, LENIENT) == NOW + timedelta(seconds=30)
    with pytest.raises(DurationError):
        parse_delay("tomorrow", NOW, LENIENT)
    with pytest.raises(DurationError):
        parse_delay(True, NOW, LENIENT)


def test_delay_policy_decides_numbers_and_past_dates() -> None:
    past = "2020-01-01T00:00:00Z"
    assert parse_delay(past, NOW, LENIENT) == NOW
    assert parse_delay("0s", NOW, LENIENT) == NOW
    with pytest.raises(DurationError, match="not in the future"):
        parse_delay(past, NOW, STRICT)
    with pytest.raises(DurationError):
        parse_delay("0s", NOW, STRICT)
    with pytest.raises(DurationError):
        parse_delay(30, NOW, STRICT)
    assert parse_delay("30s", NOW, STRICT) == NOW + timedelta(seconds=30)


def test_ttl_forms() -> None:
    assert parse_ttl("10m") == 600
    assert parse_ttl(90) == 90
    assert parse_ttl("90") == 90
    assert parse_ttl(0) == 0
    assert parse_ttl(None) is None
    with pytest.raises(DurationError):
        parse_ttl("soon")
    with pytest.raises(DurationError):
        parse_ttl(True)


def test_wire_formats() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(600) == "10m"
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)) == "2026-01-02T03:04:05.678Z"
    assert iso(None) is None
