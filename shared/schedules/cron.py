"""Cron expressions and IANA timezones: parsing, the next ticks, the latest missed one.

Parsing and calendar arithmetic are cronsim's (Debian cron's semantics). This module adds
the contract with UTC instants: every tick it returns is an aware UTC datetime, whatever a
DST transition did to the wall clock in between. The DST behaviour, and why cronsim:
docs/api.md#schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from reprise_server.shared.errors import BadRequest

DEFAULT_TIMEZONE = "UTC"
# Far more than a DST transition can make cronsim yield before a tick past the instant.
_MAX_STEPS = 1000
_NOT_ZONES = frozenset({"Factory", "localtime", "posixrules"})


class InvalidCron(BadRequest):
    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"Invalid cron expression '{expression}': {reason}")


class InvalidTimezone(BadRequest):
    def __init__(self, timezone: str) -> None:
        super().__init__(
            f"Invalid IANA timezone: '{timezone}' (GET /api/v1/timezones lists the valid ones)"
        )


@lru_cache(maxsize=1)
def _zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones() - _NOT_ZONES - {DEFAULT_TIMEZONE}))


def timezones(*, include_utc: bool = True) -> list[str]:
    """Every timezone a schedule accepts, sorted, ``UTC`` first (as Trigger.dev lists them)."""
    return [DEFAULT_TIMEZONE, *_zones()] if include_utc else list(_zones())


def _zone(name: str) -> ZoneInfo:
    if name != DEFAULT_TIMEZONE and name not in _zones():
        raise InvalidTimezone(name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimezone(name) from None


@dataclass(frozen=True)
class Cron:
    """A validated cron expression in a timezone.

    Five fields (minute hour day-of-month month day-of-week), or six with seconds first
    (a Reprise extension that Trigger.dev refuses; cronsim and Trigger.dev's own
    cron-parser read the sixth field the same way). ``L``, ``LW``, ``5L`` and ``MON#2``
    work as in Quartz.
    """

    expression: str
    timezone: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, timezone: str | None = None) -> Cron:
        """Raises :class:`InvalidCron` or :class:`InvalidTimezone` (400s naming the value)."""
        expression = " ".join(expression.split())
        if not expression:
            raise InvalidCron(expression, "it is empty")
        zone = _zone(timezone or DEFAULT_TIMEZONE)
        try:
            CronSim(expression, datetime(2000, 1, 1, tzinfo=zone))
        except CronSimError as exc:
            raise InvalidCron(expression, str(exc).lower()) from None
        cron = cls(expression, timezone or DEFAULT_TIMEZONE, zone)
        if cron.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise InvalidCron(expression, "it never matches a date")
        return cron

    def describe(self) -> str:
        """In English, e.g. "At the start of every hour" (the schedule's ``description``)."""
        return CronSim(self.expression, datetime(2000, 1, 1, tzinfo=self.zone)).explain()

    def next_after(self, instant: datetime) -> datetime | None:
        """The first tick strictly after ``instant`` (UTC), or None if there is none within
        cronsim's 50-year horizon."""
        ticks = CronSim(self.expression, instant.astimezone(self.zone))
        for _ in range(_MAX_STEPS):
            try:
                tick = next(ticks).astimezone(UTC)
            except StopIteration:
                return None
            # In the hour that falls back, a fixed-time job's tick is its first occurrence,
            # which can lie before ``instant`` when ``instant`` is in the second one.
            if tick > instant:
                return tick
        return None

    def upcoming(self, instant: datetime, count: int) -> list[datetime]:
        """The next ``count`` ticks strictly after ``instant``."""
        ticks: list[datetime] = []
        current: datetime | None = instant
        while len(ticks) < count and current is not None:
            current = self.next_after(current)
            if current is not None:
                ticks.append(current)
        return ticks

    def latest_at_or_before(self, instant: datetime) -> datetime | None:
        """The last tick at or before ``instant`` (the one a catch-up runs)."""
        start = instant.replace(microsecond=0) + timedelta(seconds=1)
        ticks = CronSim(self.expression, start.astimezone(self.zone), reverse=True)
        for _ in range(_MAX_STEPS):
            try:
                tick = next(ticks).astimezone(UTC)
            except StopIteration:
                return None
            if tick <= instant:
                return tick
        return None
