"""Bulk actions (Trigger.dev's ``runs.bulk.*``): create (or preview with ``dryRun``), list,
retrieve, abort. The domain is :mod:`shared.bulk.service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from reprise_server.api.deps import (
    ApiVersion,
    BearerCredential,
    Caller,
    DbSession,
    EdgeRoute,
    json_body,
)
from reprise_server.api.queries import page_request
from reprise_server.shared.bulk import service
from reprise_server.shared.bulk.schemas import BulkActionRequest
from reprise_server.shared.bulk.wire import SDK_KINDS, bulk_action_to_wire, preview_to_wire
from reprise_server.shared.errors import BadRequest, Conflict, InvalidInput

router = APIRouter(tags=["bulk actions"], route_class=EdgeRoute)

# 400 with a sentence naming the field (Trigger.dev answers 400 for a body it cannot use).
BulkBody = Annotated[BulkActionRequest, json_body(BulkActionRequest, error=BadRequest)]


@router.post("/api/v1/bulk-actions", status_code=202,
             summary="Replay, cancel or reschedule runs by ids (up to 500) or by a filter",
             response_description="202 {id}; with dryRun, 200 {dryRun, count, runIds}")
def create_bulk_action(auth: Caller, body: BulkBody, session: DbSession,
                       api_version: ApiVersion = None) -> JSONResponse:
    spec = service.spec_of(session, body, api_version)
    if body.dry_run:
        return JSONResponse(preview_to_wire(service.preview(session, auth, spec)))
    bulk = service.create_bulk_action(session, auth, spec)
    return JSONResponse({"id": bulk.id}, status_code=202)


@router.get("/api/v1/bulk-actions", summary="Bulk actions, newest first")
def list_bulk_actions(
    auth: Caller, session: DbSession, credential: BearerCredential,
    page_size: Annotated[str | None, Query(alias="page[size]")] = None,
    page_after: Annotated[str | None, Query(alias="page[after]")] = None,
    page_before: Annotated[str | None, Query(alias="page[before]")] = None,
    api_version: ApiVersion = None,
) -> JSONResponse:
    try:
        page = page_request(page_size, page_after, page_before, cursor_prefix="bulk_")
    except InvalidInput as exc:
        raise BadRequest(exc.message) from None
    # The official SDK (it sends x-trigger-api-version) parses only replay and cancel.
    kinds = SDK_KINDS if api_version else None
    found = service.list_bulk_actions(session, auth, page, kinds)
    pagination = {key: value for key, value in
                  (("next", found.next_cursor), ("previous", found.previous_cursor)) if value}
    return JSONResponse({"data": [bulk_action_to_wire(b) for b in found.actions],
                         "pagination": pagination})


@router.get("/api/v1/bulk-actions/{bulk_action_id}", summary="A bulk action and its progress")
def retrieve_bulk_action(bulk_action_id: str, auth: Caller, session: DbSession) -> JSONResponse:
    return JSONResponse(bulk_action_to_wire(service.get_bulk_action(session, auth, bulk_action_id)))


@router.post("/api/v1/bulk-actions/{bulk_action_id}/abort", summary="Abort a bulk action")
def abort_bulk_action(bulk_action_id: str, auth: Caller, session: DbSession) -> JSONResponse:
    try:
        bulk = service.abort_bulk_action(session, auth, bulk_action_id)
    except Conflict as exc:
        # Not a transient conflict: the SDK must not retry it.
        return JSONResponse({"error": exc.message}, status_code=409,
                            headers={"x-should-retry": "false"})
    return JSONResponse({"id": bulk.id})
