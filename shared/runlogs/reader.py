"""Reading a run's captured lines: in ``seq`` order, after a cursor, by minimum level and
by text. The caller has already decided the run is visible (this reads by run id only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from reprise_server.shared.durations import iso
from reprise_server.shared.runlogs.models import RunLog
from reprise_server.shared.runs.models import Attempt
from reprise_server.shared.runs.states import AttemptStatus

# Python's level names, lowest first; a filter keeps its level and the ones above it.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class LogPage:
    lines: list[RunLog]
    # The ``after`` of the next read: the last line's seq, or the one given if none came
    # (a tail keeps polling with it).
    after: int | None
    # More lines matched than ``limit``: read again at once with ``after``.
    has_more: bool


def levels_from(level: str | None) -> Sequence[str] | None:
    """The level names a minimum level keeps (None: every level); ValueError if unknown."""
    if not level:
        return None
    name = level.strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    return LEVELS[LEVELS.index(name):]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def read_logs(
    session: Session, run_id: str, *, after: int | None = None, level: str | None = None,
    search: str | None = None, limit: int = 500,
) -> LogPage:
    """A run's lines with ``seq`` above ``after``, oldest first, at most ``limit``.
    ``search`` matches the message or the traceback, case-insensitively."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = select(RunLog).where(RunLog.run_id == run_id)
    if after is not None:
        query = query.where(RunLog.seq > after)
    kept = levels_from(level)
    if kept is not None:
        query = query.where(RunLog.level.in_(list(kept)))
    if search:
        pattern = _like(search)
        query = query.where(or_(RunLog.message.ilike(pattern, escape="\\"),
                                RunLog.exception.ilike(pattern, escape="\\")))
    rows = list(session.scalars(query.order_by(RunLog.seq).limit(limit + 1)))
    has_more = len(rows) > limit
    lines = rows[:limit]
    return LogPage(lines, lines[-1].seq if lines else after, has_more)


@dataclass(frozen=True)
class AttemptError:
    """A failed attempt's error (``attempts.error``: what the task raised, with its stack
    trace) as the logs panel shows it: one read-only ERROR entry at the end of that attempt's
    lines. It is not a captured line (no seq, nothing in ``run_logs``)."""

    attempt_number: int
    finished_at: datetime | None
    name: str
    message: str
    stack_trace: str | None
    level: str = "ERROR"

    @property
    def text(self) -> str:
        return f"{self.name}: {self.message}" if self.name else self.message


def attempt_errors(attempts: Sequence[Attempt], *, level: str | None = None,
                   search: str | None = None) -> list[AttemptError]:
    """The errors of a run's failed attempts, in attempt order, kept by the same filter as
    the lines (their level is ERROR; ``search`` matches the error's name, message or stack
    trace, case-insensitively). ValueError for an unknown level."""
    kept = levels_from(level)
    if kept is not None and "ERROR" not in kept:
        return []
    needle = search.casefold() if search else None
    found = []
    for attempt in sorted(attempts, key=lambda a: a.number):
        if attempt.status != AttemptStatus.FAILED or not attempt.error:
            continue
        error = attempt.error
        entry = AttemptError(attempt.number, attempt.completed_at,
                             str(error.get("name") or ""), str(error.get("message") or ""),
                             str(error.get("stackTrace") or "") or None)
        if needle and not any(needle in part.casefold()
                              for part in (entry.text, entry.stack_trace or "")):
            continue
        found.append(entry)
    return found


def with_attempt_errors(lines: Sequence[RunLog], errors: Sequence[AttemptError], *,
                        complete: bool) -> list[RunLog | AttemptError]:
    """``lines`` with each attempt's error placed after that attempt's lines: before the
    first line of a later attempt, or last once no line is left to read (``complete``).
    An error whose place is past these lines (more follow) is left out."""
    merged: list[RunLog | AttemptError] = []
    pending = sorted(errors, key=lambda e: e.attempt_number)
    for line in lines:
        while pending and pending[0].attempt_number < line.attempt_number:
            merged.append(pending.pop(0))
        merged.append(line)
    if complete:
        merged.extend(pending)
    return merged


def attempt_error_json(error: AttemptError) -> dict[str, object]:
    """An attempt's error as the dashboard's logs endpoint sends it (``attemptErrors``)."""
    data: dict[str, object] = {
        "attempt": error.attempt_number,
        "time": iso(error.finished_at),
        "level": error.level,
        "name": error.name,
        "message": error.text,
    }
    if error.stack_trace:
        data["exception"] = error.stack_trace
    return data


def lines_of_run(session: Session, run_id: str, limit: int) -> tuple[list[RunLog], bool]:
    """A run's first ``limit`` lines in order, and whether there were more (the trace's
    events)."""
    rows = list(session.scalars(
        select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.seq).limit(limit + 1)
    ))
    return rows[:limit], len(rows) > limit


def line_to_json(line: RunLog) -> dict[str, object]:
    """A line as the dashboard's logs endpoint sends it."""
    data: dict[str, object] = {
        "seq": line.seq,
        "attempt": line.attempt_number,
        "time": iso(line.logged_at),
        "level": line.level,
        "logger": line.logger,
        "message": line.message,
    }
    if line.attributes:
        data["attributes"] = line.attributes
    if line.exception:
        data["exception"] = line.exception
    return data


def line_json(line: RunLog) -> dict[str, Any]:
    """A line as Reprise's API logs route (``GET /api/v1/runs/{id}/logs``) shows it."""
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
