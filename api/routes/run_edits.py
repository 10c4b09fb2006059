"""Run metadata, tags, result and idempotency-key reset, in the official SDK's shapes
(the rules: :mod:`shared.runs.edits`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from reprise_server.api.deps import (
    Caller,
    DbSession,
    EdgeRoute,
    Reader,
    RunId,
    api_applier,
    json_body,
)
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.reads import visible_run
from reprise_server.shared.runs import edits
from reprise_server.shared.runs.schemas import (
    AddTagsRequest,
    ResetIdempotencyKeyRequest,
    UpdateMetadataRequest,
)

router = APIRouter(tags=["runs"], route_class=EdgeRoute)

MetadataBody = Annotated[UpdateMetadataRequest, json_body(UpdateMetadataRequest, error=InvalidInput)]
TagsBody = Annotated[AddTagsRequest, json_body(AddTagsRequest, error=InvalidInput)]
ResetBody = Annotated[
    ResetIdempotencyKeyRequest, json_body(ResetIdempotencyKeyRequest, error=InvalidInput)
]


@router.get("/api/v1/runs/{run_id}/metadata", summary="A run's metadata")
def get_metadata(auth: Reader, run_id: RunId, session: DbSession) -> JSONResponse:
    visible_run(session, auth, run_id, api_applier())
    metadata = edits.get_metadata(session, auth, run_id)
    return JSONResponse({"metadata": metadata, "metadataType": "application/json"})


@router.put("/api/v1/runs/{run_id}/metadata",
            summary="Replace or change a run's metadata (the SDK's metadata flush)")
def update_metadata(auth: Caller, run_id: RunId, body: MetadataBody,
                    session: DbSession) -> JSONResponse:
    visible_run(session, auth, run_id, api_applier())
    return JSONResponse({"metadata": edits.update_metadata(session, auth, run_id, body)})


@router.post("/api/v1/runs/{run_id}/tags", summary="Add tags to a run")
def add_tags(auth: Caller, run_id: RunId, body: TagsBody, session: DbSession) -> JSONResponse:
    visible_run(session, auth, run_id, api_applier())
    tags = [body.tags] if isinstance(body.tags, str) else body.tags
    return JSONResponse({"message": edits.add_tags(session, auth, run_id, tags)})


@router.get("/api/v1/runs/{run_id}/result", summary="The execution result of a finished run")
def run_result(auth: Caller, run_id: RunId, session: DbSession) -> JSONResponse:
    visible_run(session, auth, run_id, api_applier())
    return JSONResponse(edits.run_result(session, auth, run_id))


@router.post("/api/v1/idempotencyKeys/{key}/reset",
             summary="Forget an idempotency key, so the next trigger with it makes a new run")
def reset_idempotency_key(key: str, auth: Caller, body: ResetBody,
                          session: DbSession) -> JSONResponse:
    return JSONResponse(
        {"id": edits.reset_idempotency_key(session, auth, key, body.task_identifier)}
    )
