"""``POST /api/v1/tasks/{taskId}/trigger``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.deps import caller, parse_json, raw_body
from api.validation import validation_message
from shared.db import transaction
from shared.errors import InvalidInput
from shared.projects.tokens import create_public_token
from shared.runs.schemas import TriggerRequest
from shared.runs.service import trigger_run

router = APIRouter(tags=["tasks"])

TRIGGER_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "content": {"application/json": {"schema": TriggerRequest.model_json_schema()}},
    }
}


@router.post(
    "/api/v1/tasks/{task_id}/trigger",
    summary="Trigger a task",
    openapi_extra=TRIGGER_BODY_SCHEMA,
    responses={200: {"description": "The run id, and isCached for a reused idempotency key"}},
)
def trigger_task(
    task_id: str, request: Request, body: bytes = Depends(raw_body)
) -> JSONResponse:
    with transaction() as session:
        auth = caller(session, request)
        data = parse_json(body, required=False)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidInput("the request body must be a JSON object")
        try:
            parsed = TriggerRequest.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput(validation_message(exc)) from None
        result = trigger_run(
            session,
            auth,
            task_id,
            parsed.payload,
            parsed.options,
            request.headers.get("x-trigger-request-idempotency-key"),
        )
        run_id = result.run.id
    content: dict[str, Any] = {"id": run_id}
    if result.is_cached:
        content["isCached"] = True
    return JSONResponse(content, headers={"x-trigger-jwt": create_public_token(auth, [run_id])})
