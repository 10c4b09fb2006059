"""The one duration grammar (``1h30m``, ``1hr``, ``2w``), and the delay and TTL
parsers built on it, for every route that takes one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

_UNIT_SECONDS = {"w": 604800, "d": 86400, "hr": 3600, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)(w|d|hr|h|m|s)")
_WHOLE = re.compile(r"^(?:\d+(?:w|d|hr|h|m|s))+$")
_MAX_SECONDS = 100 * 365 * 86400


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> int:
    """Seconds in a duration string such as ``1d``, ``6h``, ``1h30m`` or ``11s``."""
    value = text.strip()
    if not _WHOLE.match(value):
        raise DurationError(f"not a duration: {text!r}")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))
    if seconds > _MAX_SECONDS:
        raise DurationError(f"duration too long: {text!r}")
    return seconds


def format_duration(seconds: int) -> str:
    """The canonical string for a whole number of seconds (``5400`` -> ``1h30m``)."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def parse_datetime(text: str) -> datetime:
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise DurationError(f"not a date: {text!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class DelayPolicy:
    """How a route reads a delay: whether a JSON number counts as seconds from now, and
    what a date in the past means (``"now"``: due at once; ``"reject"``: an error). Each
    route declares its policy next to the route (trigger, replay, reschedule)."""

    numbers: bool
    past: Literal["now", "reject"]


def parse_delay(value: object, now: datetime, policy: DelayPolicy) -> datetime:
    """When something delayed by ``value`` becomes due: a duration from ``now``, an
    ISO-8601 date-time, or (if the policy allows) a number of seconds from ``now``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and policy.numbers:
        if value < 0:
            raise DurationError("delay must not be negative")
        due = now + timedelta(seconds=float(value))
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if _WHOLE.match(text):
            due = now + timedelta(seconds=parse_duration(text))
        else:
            due = parse_datetime(text)
    else:
        raise DurationError("delay must be a duration such as '1h30m' or an ISO-8601 date")
    if due > now:
        return due
    if policy.past == "reject":
        raise DurationError(f"delay is not in the future: {value!r}")
    return now


def parse_ttl(value: object) -> int | None:
    """A TTL in seconds: a duration string, or a number of seconds (also as a string
    of digits); ``0`` means no TTL and ``None`` that none was given."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise DurationError("ttl must not be negative")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isdigit() else parse_duration(text)
    raise DurationError("ttl must be a duration string or a number of seconds")


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and ``Z``, as the wire format wants."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
