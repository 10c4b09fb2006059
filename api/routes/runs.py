"""Run reads and cancel: retrieve, list, trace, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from reprise_server.api.deps import (
    ApiVersion,
    Caller,
    DbSession,
    EdgeRoute,
    Reader,
    RunId,
    api_applier,
)
from reprise_server.api.presenters import render_page, render_run
from reprise_server.api.queries import ListQuery, ProjectListQuery
from reprise_server.shared.errors import InvalidInput, NotFound
from reprise_server.shared.reads import (
    read_page,
    read_project_page,
    read_run,
    read_trace,
    visible_run,
)
from reprise_server.shared.runs.service import cancel_run
from reprise_server.shared.runs.trace import (
    MAX_PAGE_SIZE,
    span_detail_to_wire,
    trace_page_to_wire,
    trace_to_wire,
)

router = APIRouter(tags=["runs"], route_class=EdgeRoute)


@router.get("/api/v3/runs/{run_id}", summary="Retrieve a run")
def retrieve_run(auth: Reader, run_id: RunId, session: DbSession, request: Request,
                 api_version: ApiVersion = None) -> JSONResponse:
    view = read_run(session, auth, run_id, api_applier())
    return JSONResponse(render_run(request, view, api_version, public=auth.is_public))


@router.get("/api/v1/runs", summary="List runs, newest first, with cursor pagination")
def list_runs(auth: Caller, query: ListQuery, session: DbSession,
              api_version: ApiVersion = None) -> JSONResponse:
    page = read_page(session, auth, query, api_applier())
    return JSONResponse(render_page(page, auth, api_version))


@router.get("/api/v1/projects/{project_ref}/runs",
            summary="List a project's runs (the caller's environment), as /api/v1/runs")
def list_project_runs(project_ref: str, auth: Caller, query: ProjectListQuery,
                      session: DbSession, api_version: ApiVersion = None) -> JSONResponse:
    page = read_project_page(session, auth, project_ref, query, api_applier())
    return JSONResponse(render_page(page, auth, api_version))


@router.get("/api/v1/runs/{run_id}/trace", summary="A run's trace: its spans as a tree")
def run_trace(auth: Reader, run_id: RunId, session: DbSession, request: Request) -> JSONResponse:
    """The whole tree (``retrieveRunTrace``); with ``page[size]`` (and ``page[after]``, the
    previous page's ``pagination.next``) the same spans flat, a page at a time
    (``retrieveRunTracePage``)."""
    size_text = request.query_params.get("page[size]")
    after = request.query_params.get("page[after]")
    size = None
    if size_text is not None or after is not None:
        try:
            size = int(size_text) if size_text is not None else MAX_PAGE_SIZE
        except ValueError:
            raise InvalidInput("page[size] must be a whole number") from None
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page[size] must be between 1 and {MAX_PAGE_SIZE}")
    trace = read_trace(session, auth, run_id, api_applier())
    if size is None:
        return JSONResponse(trace_to_wire(trace))
    return JSONResponse(trace_page_to_wire(trace, size, after or None))


@router.get("/api/v1/runs/{run_id}/spans/{span_id}", summary="One span of a run's trace")
def run_span(auth: Reader, run_id: RunId, span_id: str, session: DbSession) -> JSONResponse:
    """A span with its events and properties (``retrieveSpan``): the paged trace's spans
    are lean."""
    detail = span_detail_to_wire(read_trace(session, auth, run_id, api_applier()), span_id)
    if detail is None:
        raise NotFound("Span not found")
    return JSONResponse(detail)


@router.post("/api/v2/runs/{run_id}/cancel", summary="Cancel a run")
def cancel(
    auth: Caller, run_id: RunId, session: DbSession,
    cancel_children: Annotated[bool, Query(alias="cancelChildren")] = False,
) -> JSONResponse:
    """``?cancelChildren=true`` (a Reprise extension) cancels every unfinished run it
    triggered too, to any depth."""
    run = visible_run(session, auth, run_id, api_applier())
    cancel_run(session, run.id, children=cancel_children)
    return JSONResponse({"id": run.id})
