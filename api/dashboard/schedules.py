"""Schedules in the dashboard: the environment's cron schedules with their next ticks, each
linking to the runs its ticks created; and editing the imperative ones (create, edit,
activate, deactivate, delete) through :mod:`shared.schedules.service`, the functions
``/api/v1/schedules`` calls, so the same validation and messages. A declarative schedule
(``@task(cron=…)``) is read-only: its worker version's code owns it.

As you type a cron, the form's script asks ``GET /dashboard/schedules/describe.json`` (with
a short debounce) for its English description: the server's describer and validation (the
parser, the timezone, the sweep interval rule) are the ones the save uses, so the page never
says a cron is fine that the save then refuses, and there is one describer to keep."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from reprise_server.api.dashboard.web import (
    PREFIX,
    SECURITY_HEADERS,
    Form,
    checked_form,
    page,
    signed_in,
    to_sign_in,
)
from reprise_server.api.deps import DbSession
from reprise_server.shared.db import db_now
from reprise_server.shared.durations import iso
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.projects.task_list import read_tasks
from reprise_server.shared.schedules import service
from reprise_server.shared.schedules.cron import Cron, timezones
from reprise_server.shared.schedules.models import Schedule, ScheduleType
from reprise_server.shared.schedules.schemas import CreateScheduleRequest, UpdateScheduleRequest
from reprise_server.shared.sessions.service import SignedIn

router = APIRouter()

PER_PAGE = 50
FIELDS = ("task", "cron", "timezone", "externalId", "deduplicationKey")


def _description(expression: str, timezone: str) -> str:
    try:
        return Cron.parse(expression, timezone).describe()
    except RepriseError:
        return ""


def _list_page(request: Request, session: Session, signed: SignedIn, *,
               error: str | None = None, dialog: str | None = None,
               target: str | None = None, status_code: int = 200) -> Response:
    raw = request.query_params.get("page") or "1"
    try:
        found = service.list_schedules(session, signed.auth, int(raw) if raw.isdigit() else 0,
                                       PER_PAGE)
    except RepriseError as exc:
        return page("message.html", exc.status_code, signed=signed, title="Schedules",
                    message=exc.message)
    rows = [
        {"schedule": s, "description": _description(s.cron, s.timezone),
         "next": service.next_runs(s, signed.now, 1)}
        for s in found.schedules
    ]
    if dialog is None and request.query_params.get("dialog") == "delete":
        dialog, target = "delete", request.query_params.get("schedule")
    subject = None
    if dialog == "delete":
        try:
            subject = service.get_schedule(session, signed.auth, target or "")
        except RepriseError as exc:
            error, status_code = exc.message, exc.status_code
    return page("schedules.html", status_code, signed=signed, rows=rows, found=found,
                now=signed.now, dialog=dialog, subject=subject, target=target, error=error,
                env_slug=signed.auth.environment_slug)


@router.get("/schedules")
def schedules_list(request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    return _list_page(request, session, signed)


@router.get("/schedules/describe.json")
def describe(request: Request, session: DbSession) -> Response:
    """``{description, next}`` of a cron in a timezone, or ``{error}`` (400): what saving
    it would answer."""
    if signed_in(request, session, request.query_params.get("env")) is None:
        return JSONResponse({"error": "not signed in"}, status_code=401,
                            headers=SECURITY_HEADERS)
    params = request.query_params
    try:
        cron = service.new_cron(params.get("cron", "")[:200], params.get("timezone") or None)
    except RepriseError as exc:
        return JSONResponse({"error": exc.message}, status_code=400, headers=SECURITY_HEADERS)
    upcoming = cron.upcoming(db_now(session), 3)
    return JSONResponse({"description": cron.describe(), "timezone": cron.timezone,
                         "next": [iso(t) for t in upcoming]}, headers=SECURITY_HEADERS)


def _form_page(session: Session, signed: SignedIn, *, schedule: Schedule | None,
               values: dict[str, str], error: str | None = None,
               status_code: int = 200) -> Response:
    tasks = [t.id for t in read_tasks(session, signed.auth.environment_id, signed.now).tasks]
    return page("schedule_form.html", status_code, signed=signed, schedule=schedule,
                values=values, error=error, tasks=tasks, timezones=timezones(),
                description=_description(values.get("cron", ""),
                                         values.get("timezone") or "UTC"),
                env_slug=signed.auth.environment_slug)


def _values_of(schedule: Schedule) -> dict[str, str]:
    return {"task": schedule.task_identifier, "cron": schedule.cron,
            "timezone": schedule.timezone, "externalId": schedule.external_id or "",
            "deduplicationKey": schedule.deduplication_key
            if schedule.user_provided_deduplication_key else ""}


def _body(form: dict[str, str], *, create: bool) -> dict[str, Any]:
    """The REST body of the form: blank optional fields are absent."""
    body: dict[str, Any] = {"task": form.get("task", "").strip(),
                            "cron": form.get("cron", "").strip()}
    optional = ("timezone", "externalId", "deduplicationKey") if create else (
        "timezone", "externalId")
    for name in optional:
        value = form.get(name, "").strip()
        if value:
            body[name] = value
    return body


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "the schedule"
    return f"{where}: {first.get('msg', 'invalid')}"


@router.get("/schedules/new")
def new_schedule(request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    return _form_page(session, signed, schedule=None,
                      values={"cron": "0 * * * *", "timezone": "UTC"})


def _saved(signed: SignedIn) -> Response:
    return RedirectResponse(f"{PREFIX}/schedules?env={signed.auth.environment_slug}",
                            status_code=303)


@router.post("/schedules")
def create_schedule(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    values = {key: form.get(key, "") for key in FIELDS}
    try:
        body = CreateScheduleRequest.model_validate(_body(form, create=True))
        service.create_schedule(session, signed.auth, body)
    except ValidationError as exc:
        return _form_page(session, signed, schedule=None, values=values,
                          error=_validation_message(exc), status_code=400)
    except RepriseError as exc:
        session.rollback()
        return _form_page(session, signed, schedule=None, values=values, error=exc.message,
                          status_code=exc.status_code)
    return _saved(signed)


def _readonly(signed: SignedIn, schedule: Schedule) -> Response:
    return page("message.html", 400, signed=signed, title="A declarative schedule",
                message=f"Schedule {schedule.id} is declared in code by @task(cron=…) of "
                        f"the task '{schedule.task_identifier}': the current worker version "
                        "owns it, so it cannot be edited, (de)activated or deleted here. "
                        "Change the task's cron and deploy.")


@router.get("/schedules/{schedule_id}/edit")
def edit_schedule(schedule_id: str, request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    try:
        schedule = service.get_schedule(session, signed.auth, schedule_id)
    except RepriseError as exc:
        return page("message.html", exc.status_code, signed=signed, title="Schedules",
                    message=exc.message)
    if schedule.type is ScheduleType.DECLARATIVE:
        return _readonly(signed, schedule)
    return _form_page(session, signed, schedule=schedule, values=_values_of(schedule))


@router.post("/schedules/{schedule_id}")
def update_schedule(schedule_id: str, request: Request, session: DbSession, form: Form
                    ) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    try:
        schedule = service.get_schedule(session, signed.auth, schedule_id)
    except RepriseError as exc:
        return page("message.html", exc.status_code, signed=signed, title="Schedules",
                    message=exc.message)
    values = {key: form.get(key, "") for key in FIELDS}
    try:
        body = UpdateScheduleRequest.model_validate(_body(form, create=False))
        service.update_schedule(session, signed.auth, schedule_id, body)
    except ValidationError as exc:
        return _form_page(session, signed, schedule=schedule, values=values,
                          error=_validation_message(exc), status_code=400)
    except RepriseError as exc:
        session.rollback()
        return _form_page(session, signed, schedule=schedule, values=values,
                          error=exc.message, status_code=exc.status_code)
    return _saved(signed)


def _action(request: Request, session: Session, form: dict[str, str], schedule_id: str,
            action: str) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    try:
        if action == "delete":
            service.delete_schedule(session, signed.auth, schedule_id)
        else:
            service.set_active(session, signed.auth, schedule_id, action == "activate")
    except RepriseError as exc:
        session.rollback()
        return _list_page(request, session, signed, error=exc.message,
                          dialog="delete" if action == "delete" else None,
                          target=schedule_id, status_code=exc.status_code)
    return _saved(signed)


@router.post("/schedules/{schedule_id}/activate")
def activate(schedule_id: str, request: Request, session: DbSession, form: Form) -> Response:
    return _action(request, session, form, schedule_id, "activate")


@router.post("/schedules/{schedule_id}/deactivate")
def deactivate(schedule_id: str, request: Request, session: DbSession, form: Form
               ) -> Response:
    return _action(request, session, form, schedule_id, "deactivate")


@router.post("/schedules/{schedule_id}/delete")
def delete(schedule_id: str, request: Request, session: DbSession, form: Form) -> Response:
    return _action(request, session, form, schedule_id, "delete")
