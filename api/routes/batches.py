"""Batches (Trigger.dev's two-phase batch API): create, stream the items, retrieve.

``POST /api/v3/batches`` and ``POST /api/v3/batches/{id}/items`` are what
``tasks.batchTrigger``, ``batch.trigger`` and ``batch.triggerByTask`` call;
``GET /api/v2/batches/{id}`` is ``batch.retrieve``. A secret key may do all three; a
public token may create and fill a batch of the tasks its ``batchTrigger:tasks:<id>``
scopes name, and read a batch its ``read:batch:<id>`` names.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from reprise_server.api.deps import (
    ApiVersion,
    BearerCredential,
    DbSession,
    EdgeRoute,
    Reader,
    RequestKey,
    json_body,
)
from reprise_server.api.validation import validation_message
from reprise_server.shared.batches.schemas import BatchItemLine, CreateBatchRequest
from reprise_server.shared.batches.service import create_batch, read_batch, stream_items
from reprise_server.shared.batches.wire import batch_to_wire
from reprise_server.shared.errors import BadRequest, RepriseError
from reprise_server.shared.payloads import NotJson, read_json
from reprise_server.shared.projects.tokens import create_public_token, token_claims
from reprise_server.shared.runs.metadata import check_metadata_size

router = APIRouter(tags=["batches"], route_class=EdgeRoute)

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson")


class UnsupportedMediaType(RepriseError):
    status_code = 415


def _invalid_body(message: str) -> RepriseError:
    return BadRequest(f"Invalid request body: {message}")


CreateBatchBody = Annotated[
    CreateBatchRequest, json_body(CreateBatchRequest, error=_invalid_body)
]


@router.post("/api/v3/batches", status_code=202,
             summary="Create a batch (phase 1 of batch trigger): how many items to expect",
             response_description="{id, runCount, isCached}, and x-trigger-jwt to read it")
def create(auth: Reader, body: CreateBatchBody, session: DbSession,
           request_key: RequestKey = None) -> JSONResponse:
    created = create_batch(session, auth, body, request_key)
    batch = created.batch
    content: dict[str, object] = {
        "id": batch.id, "runCount": batch.run_count, "isCached": created.is_cached,
    }
    if batch.idempotency_key:
        content["idempotencyKey"] = batch.idempotency_key
    headers = {
        "x-trigger-jwt": create_public_token(auth, [f"read:batch:{batch.id}"]),
        "x-trigger-jwt-claims": json.dumps(token_claims(auth)),
    }
    return JSONResponse(content, status_code=202, headers=headers)


def _item(number: int, line: bytes) -> BatchItemLine:
    try:
        item = BatchItemLine.model_validate(read_json(line))
        check_metadata_size(item.options.metadata)
    except NotJson as exc:
        raise BadRequest(f"Invalid JSON at line {number}: {exc.message}") from None
    except ValidationError as exc:
        raise BadRequest(f"Invalid item at line {number}: {validation_message(exc)}") from None
    except RepriseError as exc:
        # Its status (400, or 413 for metadata over the limit), naming the line.
        exc.message = f"Invalid item at line {number}: {exc.message}"
        exc.args = (exc.message,)
        raise
    return item


async def _ndjson_items(request: Request, credential: BearerCredential) -> list[BatchItemLine]:
    content_type = request.headers.get("content-type", "")
    if not any(kind in content_type for kind in NDJSON_TYPES):
        await credential.refuse(
            UnsupportedMediaType("Content-Type must be application/x-ndjson or application/ndjson")
        )
    body = await request.body()
    try:
        return [
            _item(number, line)
            for number, line in enumerate(body.splitlines(), start=1)
            if line.strip()
        ]
    except RepriseError as exc:
        await credential.refuse(exc)


# The item stream: one BatchItemNDJSON per line (400 naming the first bad line).
BatchItems = Annotated[list[BatchItemLine], Depends(_ndjson_items)]


@router.post("/api/v3/batches/{batch_id}/items",
             summary="Stream a batch's items as NDJSON (phase 2): each becomes a run",
             response_description="{id, itemsAccepted, itemsDeduplicated, sealed, …}")
def add_items(batch_id: str, auth: Reader, items: BatchItems,
              session: DbSession) -> JSONResponse:
    streamed = stream_items(session, auth, batch_id, items)
    content: dict[str, object] = {
        "id": streamed.batch_id,
        "itemsAccepted": streamed.accepted,
        "itemsDeduplicated": streamed.deduplicated,
        "sealed": streamed.sealed,
    }
    if not streamed.sealed:
        content["enqueuedCount"] = streamed.enqueued
        content["expectedCount"] = streamed.expected
    return JSONResponse(content)


@router.get("/api/v2/batches/{batch_id}",
            summary="Retrieve a batch: its status, its runs and each run's status")
def retrieve(batch_id: str, auth: Reader, session: DbSession,
             api_version: ApiVersion = None) -> JSONResponse:
    return JSONResponse(batch_to_wire(read_batch(session, auth, batch_id), api_version))
