"""Reading a run's captured lines: by cursor (``seq``), level and text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runlogs.models import RunLog
from reprise_server.shared.runlogs.writer import LEVELS

MAX_PAGE = 1000


class UnknownLevel(InvalidInput):
    pass


@dataclass(frozen=True)
class LogPage:
    lines: list[RunLog]
    # The cursor to pass as ``after`` for the next lines (the last line's seq, or the
    # ``after`` given when there is nothing new).
    cursor: int | None
    has_more: bool


def levels_from(level: str | None) -> list[str] | None:
    """``level`` and every level above it (``WARNING``: WARNING, ERROR, CRITICAL)."""
    if not level:
        return None
    name = level.upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LEVELS:
        raise UnknownLevel(f"unknown level {level!r}: one of {', '.join(LEVELS)}")
    return list(LEVELS[LEVELS.index(name):])


def read_lines(
    session: Session, run_id: str, *, after: int | None = None, level: str | None = None,
    search: str | None = None, limit: int = MAX_PAGE,
) -> LogPage:
    """The run's lines after ``after`` in order, at most ``limit``."""
    limit = max(1, limit)
    query = select(RunLog).where(RunLog.run_id == run_id)
    if after is not None:
        query = query.where(RunLog.seq > after)
    levels = levels_from(level)
    if levels is not None and len(levels) < len(LEVELS):
        query = query.where(RunLog.level.in_(levels))
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(RunLog.message.ilike(f"%{escaped}%", escape="\\"))
    rows = list(session.scalars(query.order_by(RunLog.seq).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    return LogPage(rows, rows[-1].seq if rows else after, has_more)


def line_json(line: RunLog) -> dict[str, Any]:
    """A line as Reprise's logs route shows it."""
    return {
        "seq": line.seq,
        "attemptNumber": line.attempt_number,
        "loggedAt": _iso(line.logged_at),
        "level": line.level,
        "logger": line.logger,
        "message": line.message,
        "attributes": line.attributes or {},
        "exception": line.exception,
    }


# Trigger.dev's levels (TaskEventLevel) for Python's.
_TRIGGER_LEVEL = {
    "DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR", "CRITICAL": "ERROR",
}


def trigger_event_json(line: RunLog, task_identifier: str) -> dict[str, Any]:
    """A line as one of Trigger.dev's run events (``GET /api/v1/runs/{id}/events``): a
    log event (``kind`` LOG, no duration) of the run's trace."""
    attributes: dict[str, Any] = dict(line.attributes or {})
    attributes["logger"] = line.logger
    if line.exception:
        attributes["exception"] = {"stacktrace": line.exception}
    return {
        "spanId": f"log_{line.seq}",
        "parentId": None,
        "runId": line.run_id,
        "idempotencyKey": None,
        "message": line.message,
        "style": {"icon": "log"},
        "startTime": _iso(line.logged_at),
        "duration": 0,
        "isError": line.level in ("ERROR", "CRITICAL"),
        "isPartial": False,
        "isCancelled": False,
        "level": _TRIGGER_LEVEL.get(line.level, "LOG"),
        "events": [],
        "kind": "LOG",
        "attemptNumber": line.attempt_number,
        "taskSlug": task_identifier,
        "properties": attributes,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
