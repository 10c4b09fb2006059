"""``POST /api/v1/tasks/{taskId}/trigger``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from reprise_server.api.deps import DbSession, EdgeRoute, TaskTrigger
from reprise_server.shared.projects.tokens import create_public_token
from reprise_server.shared.runs.service import trigger_run

router = APIRouter(tags=["tasks"], route_class=EdgeRoute)


@router.post("/api/v1/tasks/{task_id}/trigger", summary="Trigger a task",
             response_description="The run id, and isCached for a reused idempotency key")
def trigger_task(call: TaskTrigger, session: DbSession) -> JSONResponse:
    auth, body = call.auth, call.body
    result = trigger_run(session, auth, call.task_id, body.payload, body.options, call.request_key)
    content: dict[str, Any] = {"id": result.run.id}
    if result.is_cached:
        content["isCached"] = True
    headers = {"x-trigger-jwt": create_public_token(auth, [f"read:runs:{result.run.id}"])}
    if result.warning:  # Trigger.dev accepts it; say what happened instead of refusing
        headers["x-reprise-warning"] = result.warning
    return JSONResponse(content, headers=headers)
