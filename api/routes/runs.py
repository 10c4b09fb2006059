"""Run reads and cancel: retrieve, list, cancel, and signed packet downloads."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import api_version, caller
from shared.commands.service import (
    api_applier,
    apply_pending_for_environment,
    apply_pending_for_run,
)
from shared.db import db_now, transaction
from shared.errors import NotFound
from shared.projects import repository as projects_repo
from shared.projects.tokens import sign_packet, verify_packet
from shared.runs import repository as repo
from shared.runs.listing import list_page
from shared.runs.models import Run
from shared.runs.service import cancel_run, get_run_for
from shared.runs.wire import common_run_to_wire, run_to_wire
from shared.settings import get_settings

router = APIRouter(tags=["runs"])

PACKET_TTL_SECONDS = 300


def _too_large(value: Any) -> bool:
    if value is None:
        return False
    return len(json.dumps(value, separators=(",", ":"))) > get_settings().large_payload_bytes


def _packet_url(request: Request, run: Run, kind: str) -> str:
    expires = int(time.time()) + PACKET_TTL_SECONDS
    base = str(request.base_url).rstrip("/")
    signature = sign_packet(run.id, kind, expires)
    return f"{base}/api/v1/packets/{run.id}/{kind}?expires={expires}&signature={signature}"


def render_run(session: Any, request: Request, run: Run, *, public: bool) -> dict[str, Any]:
    """The full run object for the caller (used by retrieve and reschedule)."""
    # A run that never started has no attempts and no children: skip both queries.
    attempts = repo.attempts_of(session, [run.id])[run.id] if run.attempt_count else []
    started = run.started_at is not None or run.root_run_id or run.parent_run_id
    related = repo.related_runs(session, run) if started else {}
    return run_to_wire(
        run,
        attempts,
        related,
        api_version(request),
        public=public,
        payload_url=_packet_url(request, run, "payload") if _too_large(run.payload) else None,
        output_url=_packet_url(request, run, "output") if _too_large(run.output) else None,
    )


@router.get("/api/v3/runs/{run_id}", summary="Retrieve a run")
def retrieve_run(run_id: str, request: Request) -> JSONResponse:
    with transaction() as session:
        auth = caller(session, request, allow_public=True)
        # Read-your-writes (§2.2): accepted commands show before a worker applied them.
        apply_pending_for_run(session, run_id, api_applier())
        run = get_run_for(session, auth, run_id)
        return JSONResponse(render_run(session, request, run, public=auth.is_public))


@router.get("/api/v1/runs", summary="List runs, newest first, with cursor pagination")
def list_runs(request: Request) -> JSONResponse:
    with transaction() as session:
        auth = caller(session, request)
        apply_pending_for_environment(session, auth.environment_id, api_applier())
        page = list_page(
            session, auth.environment_id, request.query_params, api_version(request),
            db_now(session),
        )
        env = projects_repo.get_environment_by_id(session, auth.environment_id)
        env_wire = {"id": auth.environment_id, "name": env.slug if env else ""}
        data = [{**common_run_to_wire(r, api_version(request)), "env": env_wire} for r in page.runs]
    pagination: dict[str, str] = {}
    if page.next_cursor:
        pagination["next"] = page.next_cursor
    if page.previous_cursor:
        pagination["previous"] = page.previous_cursor
    return JSONResponse({"data": data, "pagination": pagination})


@router.post("/api/v2/runs/{run_id}/cancel", summary="Cancel a run")
def cancel(run_id: str, request: Request) -> JSONResponse:
    with transaction() as session:
        auth = caller(session, request)
        apply_pending_for_run(session, run_id, api_applier())
        run = get_run_for(session, auth, run_id)
        cancel_run(session, run.id)
    return JSONResponse({"id": run.id})


@router.get("/api/v1/packets/{run_id}/{kind}", summary="Download a large payload or output")
def download_packet(run_id: str, kind: str, expires: int, signature: str) -> JSONResponse:
    if kind not in ("payload", "output") or not verify_packet(run_id, kind, expires, signature):
        raise NotFound("Packet not found or link expired")
    with transaction() as session:
        run = repo.get_run(session, None, run_id)
        if run is None:
            raise NotFound("Packet not found or link expired")
        return JSONResponse(run.payload if kind == "payload" else run.output)
