"""Parsing ``runs.list`` filters (both status vocabularies) and cursor pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from shared.durations import DurationError, parse_datetime, parse_duration
from shared.errors import InvalidInput
from shared.ids import is_run_id
from shared.runs import repository as repo
from shared.runs.models import Run
from shared.runs.states import RunStatus, statuses_for_filter

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


def _csv(params: Mapping[str, str], key: str) -> tuple[str, ...]:
    value = params.get(key)
    if not value:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _date(params: Mapping[str, str], key: str) -> datetime | None:
    value = params.get(key)
    if not value:
        return None
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        return parse_datetime(value)
    except (DurationError, ValueError, OverflowError):
        raise InvalidInput(f"{key} must be an ISO-8601 date") from None


def parse_filter(
    params: Mapping[str, str], api_version: str | None, now: datetime
) -> repo.RunFilter:
    statuses: set[RunStatus] | None = None
    names = _csv(params, "filter[status]")
    if names:
        statuses = set()
        for name in names:
            try:
                statuses |= statuses_for_filter(name, api_version)
            except ValueError:
                raise InvalidInput(f"filter[status] has an unknown status: {name}") from None
    created_from = _date(params, "filter[createdAt][from]")
    period = params.get("filter[createdAt][period]")
    if period:
        try:
            created_from = now - timedelta(seconds=parse_duration(period))
        except DurationError:
            raise InvalidInput("filter[createdAt][period] must be a duration such as 1d") from None
    is_test = params.get("filter[isTest]")
    return repo.RunFilter(
        statuses=frozenset(statuses) if statuses is not None else None,
        task_identifiers=_csv(params, "filter[taskIdentifier]"),
        tags=_csv(params, "filter[tag]"),
        versions=_csv(params, "filter[version]"),
        created_from=created_from,
        created_to=_date(params, "filter[createdAt][to]"),
        is_test=None if is_test is None else is_test.lower() == "true",
        batch_id=params.get("filter[batch]") or None,
    )


@dataclass(frozen=True)
class Page:
    runs: list[Run]
    next_cursor: str | None
    previous_cursor: str | None


def _cursor(session: Session, environment_id: str, value: str | None) -> tuple[datetime, str] | None:
    if not value:
        return None
    if not is_run_id(value):
        raise InvalidInput("page cursors are run ids")
    run = repo.get_run(session, environment_id, value)
    if run is None:
        raise InvalidInput("page cursor names no run")
    return run.created_at, run.id


def list_page(
    session: Session, environment_id: str, params: Mapping[str, str], api_version: str | None,
    now: datetime,
) -> Page:
    run_filter = parse_filter(params, api_version, now)
    raw_size = params.get("page[size]") or str(DEFAULT_PAGE_SIZE)
    if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page[size] must be a number from 1 to {MAX_PAGE_SIZE}")
    size = int(raw_size)
    after = _cursor(session, environment_id, params.get("page[after]"))
    before = _cursor(session, environment_id, params.get("page[before]"))
    rows = repo.list_runs(session, environment_id, run_filter, size + 1, after=after, before=before)
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
