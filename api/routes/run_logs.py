"""A run's captured log lines: Reprise's cursor route, and Trigger.dev's run events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from reprise_server.api.deps import DbSession, EdgeRoute, Reader, RunId
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runlogs.reader import (
    MAX_LIMIT,
    line_json,
    lines_of_run,
    read_logs,
    trigger_event_json,
)
from reprise_server.shared.runs.service import get_run_for
from reprise_server.shared.runs.states import FINAL_STATES
from reprise_server.shared.settings import get_settings

router = APIRouter(tags=["runs"], route_class=EdgeRoute)


@router.get("/api/v1/runs/{run_id}/logs", summary="A run's log lines after a cursor")
def run_logs(
    auth: Reader,
    run_id: RunId,
    session: DbSession,
    after: Annotated[int | None, Query(ge=0)] = None,
    level: str | None = None,
    search: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = MAX_LIMIT,
) -> JSONResponse:
    run = get_run_for(session, auth, run_id)
    try:
        page = read_logs(session, run.id, after=after, level=level, search=search, limit=limit)
    except ValueError as exc:  # an unknown level
        raise InvalidInput(str(exc)) from None
    return JSONResponse({
        "data": [line_json(line) for line in page.lines],
        "cursor": page.after,
        "hasMore": page.has_more,
        # Read before the lines: a final run's lines are all written before its status.
        "runStatus": run.status,
        "isFinal": run.status in FINAL_STATES,
    })


@router.get("/api/v1/runs/{run_id}/events", summary="A run's events (its log lines)")
def run_events(auth: Reader, run_id: RunId, session: DbSession) -> JSONResponse:
    run = get_run_for(session, auth, run_id)
    lines, _ = lines_of_run(session, run.id, get_settings().run_log_max_lines + 1)
    return JSONResponse({"events": [trigger_event_json(line, run.task_identifier) for line in lines]})
