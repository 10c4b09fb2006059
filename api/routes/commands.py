"""Replay and reschedule (Trigger.dev-compatible), and the commands they record.

The run's command history is ``GET /api/v1/runs/{runId}/commands`` (a route of its own
rather than a key of the run object, so retrieving a run costs no extra query).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.deps import bearer, caller, parse_json, raw_body
from api.routes.runs import render_run
from shared.commands.errors import InvalidRequestBody
from shared.commands.reschedule import delay_of
from shared.commands.schemas import ReplayRequest
from shared.commands.service import (
    accept_replay,
    accept_reschedule,
    api_applier,
    get_command_for,
    history_of,
)
from shared.commands.wire import command_to_wire
from shared.db import transaction
from shared.errors import BadRequest, InvalidRunId
from shared.ids import is_run_id
from shared.projects.service import authenticate
from shared.projects.tokens import create_public_token

T = TypeVar("T")

router = APIRouter(tags=["runs"])

REPLAY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": ReplayRequest.model_json_schema(by_alias=True)}
        },
    }
}
RESCHEDULE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["delay"],
                    "properties": {
                        "delay": {
                            "type": "string",
                            "description": "A duration such as 1h30m (from now) or an "
                            "ISO-8601 date-time in the future",
                        }
                    },
                }
            }
        },
    }
}


def _require_run_id(run_id: str) -> None:
    if not run_id or not is_run_id(run_id):
        raise InvalidRunId()


def checked_after_auth(session: Session, secret: str | None, check: Callable[[], T]) -> T:
    """Run request checks that need no database; if one fails, a wrong key still wins
    (401 before 400, §4), so the key is verified on that path only."""
    try:
        return check()
    except BadRequest:
        authenticate(session, secret)
        raise


def _replay_request(body: bytes) -> ReplayRequest:
    data = parse_json(body, required=False)
    if data is None:
        return ReplayRequest()
    if not isinstance(data, dict):
        raise InvalidRequestBody()
    try:
        return ReplayRequest.model_validate(data)
    except ValidationError:
        raise InvalidRequestBody() from None


@router.post(
    "/api/v1/runs/{run_id}/replay",
    summary="Replay a run: a new run of the same task with the same payload and options",
    openapi_extra=REPLAY_BODY,
    responses={200: {"description": "The id of the new run, retrievable at once"}},
)
def replay_run(run_id: str, request: Request, body: bytes = Depends(raw_body)) -> JSONResponse:
    secret = bearer(request)
    with transaction() as session:

        def check() -> ReplayRequest:
            _require_run_id(run_id)
            return _replay_request(body)

        accepted = accept_replay(
            session,
            secret,
            run_id,
            checked_after_auth(session, secret, check),
            request_key=request.headers.get("x-trigger-request-idempotency-key"),
        )
    new_run_id = accepted.target_run_id
    token = create_public_token(accepted.auth, [new_run_id])
    return JSONResponse({"id": new_run_id}, headers={"x-trigger-jwt": token})


@router.post(
    "/api/v1/runs/{run_id}/reschedule",
    summary="Reschedule a delayed run",
    openapi_extra=RESCHEDULE_BODY,
    responses={200: {"description": "The run, with its new delayedUntil"}},
)
def reschedule_run(
    run_id: str, request: Request, body: bytes = Depends(raw_body)
) -> JSONResponse:
    secret = bearer(request)
    with transaction() as session:

        def check() -> str:
            _require_run_id(run_id)
            return delay_of(parse_json(body, required=True))

        delay = checked_after_auth(session, secret, check)
        run = accept_reschedule(session, secret, run_id, delay, api_applier())
        return JSONResponse(render_run(session, request, run, public=False))


@router.get("/api/v1/commands/{command_id}", summary="A command's status and outcome")
def retrieve_command(command_id: str, request: Request) -> JSONResponse:
    with transaction() as session:
        auth = caller(session, request)
        command = get_command_for(session, auth, command_id)
        return JSONResponse(command_to_wire(command))


@router.get("/api/v1/runs/{run_id}/commands", summary="The replays and reschedules of a run")
def run_commands(run_id: str, request: Request) -> JSONResponse:
    with transaction() as session:
        auth = caller(session, request)
        commands = history_of(session, auth, run_id)
        return JSONResponse({"data": [command_to_wire(c, detailed=False) for c in commands]})
