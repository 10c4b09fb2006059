"""Run reads and cancel: retrieve, list, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Request
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
from reprise_server.api.queries import ListQuery
from reprise_server.shared.reads import read_page, read_run, visible_run
from reprise_server.shared.runs.service import cancel_run

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


@router.post("/api/v2/runs/{run_id}/cancel", summary="Cancel a run")
def cancel(auth: Caller, run_id: RunId, session: DbSession) -> JSONResponse:
    run = visible_run(session, auth, run_id, api_applier())
    cancel_run(session, run.id)
    return JSONResponse({"id": run.id})
