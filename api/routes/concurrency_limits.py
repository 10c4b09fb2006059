"""Concurrency limits (``concurrencyLimits.*`` of the official SDK): list, retrieve (the
limit, or one ``concurrencyKey``'s view of it), override, reset, pause and resume.

A limit's name may hold a ``/`` (a task's own limit is ``task/<taskId>``): the SDK sends
it percent-encoded (``task%2Fmy-task``), which arrives decoded, so the name is a ``path``
parameter and each action is told apart by the path's last segment.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from reprise_server.api.deps import (
    Caller,
    DbSession,
    EdgeRoute,
    OffsetPage,
    json_body,
    offset_page_to_wire,
)
from reprise_server.shared.errors import BadRequest, NotFound
from reprise_server.shared.flow import limits
from reprise_server.shared.flow.schemas import (
    OverrideLimitRequest,
    PauseRequest,
    ResetLimitRequest,
)
from reprise_server.shared.payloads import reject_unstorable

router = APIRouter(tags=["concurrency limits"], route_class=EdgeRoute)

PREFIX = "/api/v1/concurrency-limits"

# 400 with a sentence naming the field; nothing is written.
OverrideBody = Annotated[OverrideLimitRequest, json_body(OverrideLimitRequest, error=BadRequest)]
ResetBody = Annotated[
    ResetLimitRequest, json_body(ResetLimitRequest, error=BadRequest, required=False)
]
PauseBody = Annotated[PauseRequest, json_body(PauseRequest, error=BadRequest)]


def _name(name: str) -> str:
    """The limit's name from the path (one Postgres cannot hold names no limit)."""
    if "\x00" in name:
        raise NotFound(f"Concurrency limit not found: {name!r}")
    return name


def _key(value: str) -> str:
    """``?concurrencyKey=``: 1 to 128 characters, as a trigger's."""
    if not 1 <= len(value) <= 128:
        raise BadRequest("concurrencyKey must be 1 to 128 characters")
    reject_unstorable(value, "concurrencyKey")
    return value


@router.get(PREFIX, summary="List the environment's concurrency limits, by name, in pages")
def list_limits(auth: Caller, page: OffsetPage, session: DbSession) -> JSONResponse:
    items, count = limits.list_limits(session, auth.environment_id, *page)
    return JSONResponse(offset_page_to_wire(items, count, *page))


@router.get(PREFIX + "/{name:path}",
            summary="Retrieve a concurrency limit (with concurrencyKey: that key's view of it)")
def retrieve_limit(
    auth: Caller, name: str, session: DbSession,
    concurrency_key: Annotated[str | None, Query(alias="concurrencyKey")] = None,
) -> JSONResponse:
    if concurrency_key is not None:
        return JSONResponse(limits.retrieve_key(
            session, auth.environment_id, _name(name), _key(concurrency_key)
        ))
    return JSONResponse(limits.retrieve(session, auth.environment_id, _name(name)))


@router.post(PREFIX + "/{name:path}/override",
             summary="Override a limit's bounds, or cap one concurrencyKey for a while")
def override_limit(
    auth: Caller, name: str, body: OverrideBody, session: DbSession
) -> JSONResponse:
    if body.concurrency_key is not None:
        assert body.per_key is not None  # the body's own check
        return JSONResponse(limits.override_key(
            session, auth.environment_id, _name(name), body.concurrency_key, body.per_key,
            body.ttl,
        ))
    return JSONResponse(limits.override(
        session, auth.environment_id, _name(name), total=body.total, per_key=body.per_key
    ))


@router.post(PREFIX + "/{name:path}/reset",
             summary="Back to the declared bounds (with concurrencyKey: clear that key's cap)")
def reset_limit(auth: Caller, name: str, body: ResetBody, session: DbSession) -> JSONResponse:
    if body.concurrency_key is not None:
        return JSONResponse(limits.reset_key(
            session, auth.environment_id, _name(name), body.concurrency_key
        ))
    return JSONResponse(limits.reset(session, auth.environment_id, _name(name)))


@router.post(PREFIX + "/{name:path}/pause", summary="Pause or resume a concurrency limit")
def pause_limit(auth: Caller, name: str, body: PauseBody, session: DbSession) -> JSONResponse:
    return JSONResponse(limits.set_paused(
        session, auth.environment_id, _name(name), body.action == "pause"
    ))

