"""Tasks in the dashboard: every task of the environment's current worker version
(:mod:`shared.projects.task_list`) with what it declares, its last runs and its failure
rate over the last 24 hours; and ``Test``, which triggers a task with a JSON payload
through the REST trigger's service (:func:`shared.runs.service.trigger_run`)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from reprise_server.api.dashboard.schedules import _description
from reprise_server.api.dashboard.web import PREFIX, Form, checked_form, page, signed_in, to_sign_in
from reprise_server.api.deps import DbSession
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.payloads import NotJson, read_json
from reprise_server.shared.projects.task_list import (
    last_payload,
    read_tasks,
    task_in_current_version,
)
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import trigger_run
from reprise_server.shared.sessions.service import SignedIn

router = APIRouter()


@router.get("/tasks")
def tasks_list(request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    found = read_tasks(session, signed.auth.environment_id, signed.now)
    descriptions = {
        task.id: _description(task.cron, task.options.get("timezone") or "UTC")
        for task in found.tasks if task.cron
    }
    return page("tasks.html", signed=signed, found=found, now=signed.now,
                descriptions=descriptions, env_slug=signed.auth.environment_slug)


def _test_page(session: Session, signed: SignedIn, task_id: str, *, payload_text: str | None,
               error: str | None = None, status_code: int = 200) -> Response:
    task = task_in_current_version(session, signed.auth.environment_id, task_id)
    if task is None:
        return page("message.html", 404, signed=signed, title="Task not found",
                    message=f"The current worker version of {signed.auth.environment_slug} "
                            f"has no task {task_id!r}.")
    if payload_text is None:
        payload_text = json.dumps(last_payload(session, signed.auth.environment_id, task_id),
                                  indent=2, ensure_ascii=False)
    return page("task_test.html", status_code, signed=signed, task=task,
                payload_text=payload_text, error=error, env_slug=signed.auth.environment_slug)


@router.get("/tasks/{task_id:path}/test")
def task_test(task_id: str, request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    return _test_page(session, signed, task_id, payload_text=None)


@router.post("/tasks/{task_id:path}/test")
def task_test_submit(task_id: str, request: Request, session: DbSession, form: Form
                     ) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    text = form.get("payload", "")
    payload: Any
    try:
        payload = read_json(text.encode())
        result = trigger_run(session, signed.auth, task_id, payload,
                             TriggerOptions(test=True))
    except NotJson as exc:
        session.rollback()
        return _test_page(session, signed, task_id, payload_text=text, status_code=400,
                          error=f"Payload is not valid JSON ({exc.message})")
    except RepriseError as exc:
        session.rollback()  # a refused trigger writes nothing
        return _test_page(session, signed, task_id, payload_text=text,
                          status_code=exc.status_code, error=exc.message)
    env = signed.auth.environment_slug
    return RedirectResponse(f"{PREFIX}/runs/{result.run.id}?env={env}", status_code=303)
