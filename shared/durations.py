"""The duration grammar of §6 (``1h30m``, ``1hr``, ``2w``) and delay/TTL resolution."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

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


def resolve_delay(value: object, now: datetime) -> datetime:
    """When a run delayed by ``value`` (duration, ISO date-time or seconds) becomes due."""
    if isinstance(value, bool):
        raise DurationError("delay must be a duration or a date")
    if isinstance(value, int | float):
        if value < 0:
            raise DurationError("delay must not be negative")
        return now + timedelta(seconds=float(value))
    if not isinstance(value, str) or not value.strip():
        raise DurationError("delay must be a duration or a date")
    text = value.strip()
    if _WHOLE.match(text):
        return now + timedelta(seconds=parse_duration(text))
    return parse_datetime(text)


def resolve_ttl(value: object) -> int | None:
    """TTL in seconds: a duration string or a number of seconds; ``0`` means no TTL."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise DurationError("ttl must be a duration string or a number of seconds")
    if isinstance(value, int | float):
        if value < 0:
            raise DurationError("ttl must not be negative")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        return parse_duration(text)
    raise DurationError("ttl must be a duration string or a number of seconds")


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and ``Z``, as the wire format wants."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
