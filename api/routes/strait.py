"""Strait-compatible routes (seed 004): replay (optionally from a checkpoint), retrieve,
and a run's checkpoints, in Strait's snake_case ``JobRun`` shape.

Strait's replay answers with the new run itself, so the replay command is recorded and
then applied in the same request (the response is a read of the new run; read-your-writes
applies pending commands inline anyway). Authentication and errors are Reprise's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import bearer, caller
from api.routes.commands import checked_after_auth
from shared.commands.errors import ReplayFailed
from shared.commands.schemas import ReplayRequest
from shared.commands.service import accept_replay, api_applier, apply_command, apply_pending_for_run
from shared.db import transaction
from shared.errors import BadRequest
from shared.projects import repository as projects_repo
from shared.runs import repository as runs_repo
from shared.runs.models import Run
from shared.runs.service import get_run_for
from shared.runs.strait_wire import checkpoint_to_wire, job_run_to_wire

router = APIRouter(tags=["strait"])


def _job_run(session: Session, run: Run) -> JSONResponse:
    version = projects_repo.version_ordinal(session, run.environment_id, run.version)
    return JSONResponse(job_run_to_wire(run, version))


def _checkpoint_number(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1 or len(raw) > 9:
        raise BadRequest("from_checkpoint must be a positive integer")
    return int(raw)


@router.post(
    "/v1/runs/{run_id}/replay",
    summary="Replay a run (Strait), optionally from one of its checkpoints",
)
def strait_replay(run_id: str, request: Request) -> JSONResponse:
    secret = bearer(request)
    with transaction() as session:
        checkpoint = checked_after_auth(
            session, secret, lambda: _checkpoint_number(request.query_params.get("from_checkpoint"))
        )
        command = accept_replay(
            session, secret, run_id, ReplayRequest(), checkpoint=checkpoint, publish=False
        )
        applied = apply_command(session, command.id, api_applier())
        new_run = runs_repo.get_run(session, None, command.target_run_id)
        if new_run is None:
            raise ReplayFailed(applied.reason if applied and applied.reason else "not created")
        return _job_run(session, new_run)


@router.get("/v1/runs/{run_id}", summary="Retrieve a run (Strait JobRun)")
def strait_retrieve(run_id: str, request: Request) -> JSONResponse:
    with transaction() as session:
        auth = caller(session, request)
        apply_pending_for_run(session, run_id, api_applier())
        return _job_run(session, get_run_for(session, auth, run_id))


@router.get("/v1/runs/{run_id}/checkpoints", summary="A run's checkpoints, oldest first")
def strait_checkpoints(run_id: str, request: Request) -> JSONResponse:
    with transaction() as session:
        auth = caller(session, request)
        apply_pending_for_run(session, run_id, api_applier())
        run = get_run_for(session, auth, run_id)
        return JSONResponse([checkpoint_to_wire(c) for c in runs_repo.checkpoints_of(session, run.id)])
