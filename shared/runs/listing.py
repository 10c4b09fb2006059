"""A page of ``runs.list``: newest first, keyset cursors on ``(created_at, id)``.

The query arrives typed (the API parses ``filter[...]``/``page[...]``); what needs the
database is decided here: the cursors' positions and ``created_within`` against the
database clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reprise_server.shared.db import db_now
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runs import repository as repo
from reprise_server.shared.runs.filters import RunFilter, list_runs
from reprise_server.shared.runs.models import Run

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageRequest:
    """``size`` runs after (older than) or before (newer than) the run named by a cursor."""

    size: int = DEFAULT_PAGE_SIZE
    after: str | None = None
    before: str | None = None


@dataclass(frozen=True)
class RunQuery:
    """Which runs, and which page of them. ``created_within`` (created in the last …,
    counted back from the database clock) replaces ``filter.created_from`` when set."""

    filter: RunFilter = field(default_factory=RunFilter)
    page: PageRequest = field(default_factory=PageRequest)
    created_within: timedelta | None = None


@dataclass(frozen=True)
class Page:
    runs: list[Run]
    next_cursor: str | None
    previous_cursor: str | None


def _position(
    session: Session, environment_id: str, cursor: str | None
) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    run = repo.get_run(session, environment_id, cursor)
    if run is None:
        raise InvalidInput("page cursor names no run")
    return run.created_at, run.id


def list_page(session: Session, environment_id: str, query: RunQuery) -> Page:
    run_filter = query.filter
    if query.created_within is not None:
        run_filter = replace(run_filter, created_from=db_now(session) - query.created_within)
    size = query.page.size
    after = _position(session, environment_id, query.page.after)
    before = _position(session, environment_id, query.page.before)
    rows = list_runs(session, environment_id, run_filter, size + 1, after=after, before=before)
    has_more = len(rows) > size
    if before is not None:
        rows = rows[-size:] if has_more else rows
        next_cursor = rows[-1].id if rows else None
        previous_cursor = rows[0].id if has_more and rows else None
    else:
        rows = rows[:size]
        next_cursor = rows[-1].id if has_more and rows else None
        previous_cursor = rows[0].id if after is not None and rows else None
    return Page(rows, next_cursor, previous_cursor)
