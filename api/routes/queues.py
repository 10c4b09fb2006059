"""Queues (``queues.*`` of the official SDK): list, retrieve, pause and resume, and the
queue-level concurrency override and reset (a task queue's limit is its task's own
concurrency limit, ``task/<taskId>``).

The SDK names a queue by id (``type=id``, the default), by task id (``type=task``) or by
name (``type=custom``), and encodes the ``/`` of a name twice (``task%252Fmy-task``): the
path's value is decoded once more here. A name sent encoded once, or not at all, is read
the same.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

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
from reprise_server.shared.flow import queues
from reprise_server.shared.flow.schemas import (
    OverrideQueueRequest,
    PauseQueueRequest,
    ResetQueueRequest,
)

router = APIRouter(tags=["queues"], route_class=EdgeRoute)

PREFIX = "/api/v1/queues"

# 400 with a sentence naming the field; nothing is written.
PauseBody = Annotated[PauseQueueRequest, json_body(PauseQueueRequest, error=BadRequest)]
OverrideBody = Annotated[OverrideQueueRequest, json_body(OverrideQueueRequest, error=BadRequest)]
ResetBody = Annotated[
    ResetQueueRequest, json_body(ResetQueueRequest, error=BadRequest, required=False)
]


def _queue(value: str) -> str:
    """The queue the path names (decoded once more: the SDK encodes ``/`` twice)."""
    name = unquote(value)
    if "\x00" in name:
        raise NotFound("Queue not found")
    return name


@router.get(PREFIX, summary="List the environment's queues, by name, in pages")
def list_queues(auth: Caller, page: OffsetPage, session: DbSession) -> JSONResponse:
    items, count = queues.list_queues(session, auth.environment_id, *page)
    return JSONResponse(offset_page_to_wire(items, count, *page))


@router.get(PREFIX + "/{queue:path}", summary="Retrieve a queue by id, task id or name")
def retrieve_queue(
    auth: Caller, queue: str, session: DbSession,
    kind: Annotated[str, Query(alias="type", description="id (default), task or custom")] = "id",
) -> JSONResponse:
    found = queues.find_queue(session, auth.environment_id, _queue(queue), kind)
    return JSONResponse(queues.retrieve(session, auth.environment_id, found))


@router.post(PREFIX + "/{queue:path}/pause", summary="Pause or resume a queue")
def pause_queue(auth: Caller, queue: str, body: PauseBody, session: DbSession) -> JSONResponse:
    return JSONResponse(queues.set_paused(
        session, auth.environment_id, _queue(queue), body.type, body.action == "pause"
    ))


@router.post(PREFIX + "/{queue:path}/concurrency/override",
             summary="Refused: a queue has no limit of its own (use concurrency limits)")
def override_queue_limit(
    auth: Caller, queue: str, body: OverrideBody, session: DbSession
) -> JSONResponse:
    queues.legacy_limit(session, auth.environment_id, _queue(queue), body.type)
    raise AssertionError("unreachable")  # legacy_limit always raises


@router.post(PREFIX + "/{queue:path}/concurrency/reset",
             summary="Refused: a queue has no limit of its own (use concurrency limits)")
def reset_queue_limit(
    auth: Caller, queue: str, body: ResetBody, session: DbSession
) -> JSONResponse:
    queues.legacy_limit(session, auth.environment_id, _queue(queue), body.type)
    raise AssertionError("unreachable")  # legacy_limit always raises
