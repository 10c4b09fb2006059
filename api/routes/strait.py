"""Strait-compatible routes (docs/api.md#strait): replay (optionally from a checkpoint), retrieve,
and a run's checkpoints, in Strait's snake_case ``JobRun`` shape.

Strait's replay answers with the new run itself, so the replay command is recorded and
then applied in the same request (:func:`shared.commands.service.replay_now`).
Authentication and errors are Reprise's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from reprise_server.api.deps import (
    BearerCredential,
    Caller,
    DbSession,
    EdgeRoute,
    RunId,
    api_applier,
)
from reprise_server.api.presenters import render_job_run
from reprise_server.shared.commands.service import replay_now
from reprise_server.shared.errors import BadRequest
from reprise_server.shared.reads import job_run_of, read_checkpoints, read_job_run
from reprise_server.shared.runs.strait_wire import checkpoint_to_wire

router = APIRouter(tags=["strait"], route_class=EdgeRoute)


async def _from_checkpoint(
    credential: BearerCredential,
    raw: Annotated[str | None, Query(alias="from_checkpoint")] = None,
) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1 or len(raw) > 9:
        await credential.refuse(BadRequest("from_checkpoint must be a positive integer"))
    return int(raw)


# ``?from_checkpoint=N``: the number of one of the run's checkpoints.
FromCheckpoint = Annotated[int | None, Depends(_from_checkpoint)]


@router.post("/v1/runs/{run_id}/replay",
             summary="Replay a run (Strait), optionally from one of its checkpoints")
def strait_replay(checkpoint: FromCheckpoint, run_id: RunId, credential: BearerCredential,
                  session: DbSession) -> JSONResponse:
    auth, run = credential.with_run(run_id)
    new_run = replay_now(session, auth, run, checkpoint=checkpoint, applier=api_applier())
    return JSONResponse(render_job_run(job_run_of(session, new_run)))


@router.get("/v1/runs/{run_id}", summary="Retrieve a run (Strait JobRun)")
def strait_retrieve(auth: Caller, run_id: RunId, session: DbSession) -> JSONResponse:
    return JSONResponse(render_job_run(read_job_run(session, auth, run_id, api_applier())))


@router.get("/v1/runs/{run_id}/checkpoints", summary="A run's checkpoints, oldest first")
def strait_checkpoints(auth: Caller, run_id: RunId, session: DbSession) -> JSONResponse:
    checkpoints = read_checkpoints(session, auth, run_id, api_applier())
    return JSONResponse([checkpoint_to_wire(c) for c in checkpoints])
