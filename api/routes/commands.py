"""Replay and reschedule (Trigger.dev-compatible), and the commands they record.

The run's command history is ``GET /api/v1/runs/{runId}/commands`` (a route of its own
rather than a key of the run object, so retrieving a run costs no extra query).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from reprise_server.api.bodies import ReplayCall, RescheduleCall
from reprise_server.api.deps import (
    ApiVersion,
    Caller,
    DbSession,
    EdgeRoute,
    RequestKey,
    RunId,
    api_applier,
)
from reprise_server.api.presenters import render_run
from reprise_server.shared.commands.service import accept_replay, accept_reschedule, get_command_for
from reprise_server.shared.commands.wire import command_to_wire
from reprise_server.shared.projects.tokens import create_public_token
from reprise_server.shared.reads import read_history, view_of

router = APIRouter(tags=["runs"], route_class=EdgeRoute)


@router.post("/api/v1/runs/{run_id}/replay",
             summary="Replay a run: a new run of the same task with the same payload and options",
             response_description="The id of the new run, retrievable at once")
def replay_run(call: ReplayCall, session: DbSession,
               request_key: RequestKey = None) -> JSONResponse:
    auth, run = call.credential.with_run(call.run_id)
    body = call.body
    accepted = accept_replay(session, auth, run, body, checkpoint=body.from_checkpoint,
                             request_key=request_key)
    token = create_public_token(auth, [f"read:runs:{accepted.target_run_id}"])
    return JSONResponse({"id": accepted.target_run_id}, headers={"x-trigger-jwt": token})


@router.post("/api/v1/runs/{run_id}/reschedule", summary="Reschedule a delayed run",
             response_description="The run, with its new delayedUntil")
def reschedule_run(call: RescheduleCall, session: DbSession, request: Request,
                   api_version: ApiVersion = None) -> JSONResponse:
    # The run's row stays locked until the commit: a racing promotion waits
    # (docs/architecture.md#reschedule).
    auth, run = call.credential.with_run(call.run_id, lock=True)
    moved = accept_reschedule(session, auth, run, call.body.delay, api_applier())
    return JSONResponse(render_run(request, view_of(session, moved), api_version, public=False))


@router.get("/api/v1/commands/{command_id}", summary="A command's status and outcome")
def retrieve_command(command_id: str, auth: Caller, session: DbSession) -> JSONResponse:
    return JSONResponse(command_to_wire(get_command_for(session, auth, command_id)))


@router.get("/api/v1/runs/{run_id}/commands", summary="The replays and reschedules of a run")
def run_commands(auth: Caller, run_id: RunId, session: DbSession) -> JSONResponse:
    commands = read_history(session, auth, run_id, api_applier())
    return JSONResponse({"data": [command_to_wire(c, detailed=False) for c in commands]})
