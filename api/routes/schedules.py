"""Schedules (``schedules.*`` of the official SDK) and ``GET /api/v1/timezones``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from reprise_server.api.deps import Caller, DbSession, EdgeRoute, OffsetPage, json_body
from reprise_server.shared.db import db_now
from reprise_server.shared.errors import BadRequest
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.schedules import service
from reprise_server.shared.schedules.cron import timezones
from reprise_server.shared.schedules.models import Schedule
from reprise_server.shared.schedules.schemas import CreateScheduleRequest, UpdateScheduleRequest
from reprise_server.shared.schedules.wire import page_to_wire, schedule_to_wire

router = APIRouter(tags=["schedules"], route_class=EdgeRoute)

# 400 with a sentence naming the field (an invalid cron or timezone is a 400 too).
CreateBody = Annotated[CreateScheduleRequest, json_body(CreateScheduleRequest, error=BadRequest)]
UpdateBody = Annotated[UpdateScheduleRequest, json_body(UpdateScheduleRequest, error=BadRequest)]


def _render(session: DbSession, auth: AuthContext, schedule: Schedule) -> JSONResponse:
    return JSONResponse(schedule_to_wire(schedule, auth.environment_slug, db_now(session)))


@router.post("/api/v1/schedules", summary="Create a schedule (or update the one with its deduplicationKey)")
def create_schedule(auth: Caller, body: CreateBody, session: DbSession) -> JSONResponse:
    return _render(session, auth, service.create_schedule(session, auth, body))


@router.get("/api/v1/schedules", summary="List schedules, newest first, in pages")
def list_schedules(auth: Caller, page: OffsetPage, session: DbSession) -> JSONResponse:
    found = service.list_schedules(session, auth, *page)
    return JSONResponse(page_to_wire(found, auth.environment_slug, db_now(session)))


@router.get("/api/v1/schedules/{schedule_id}", summary="Retrieve a schedule")
def retrieve_schedule(auth: Caller, schedule_id: str, session: DbSession) -> JSONResponse:
    return _render(session, auth, service.get_schedule(session, auth, schedule_id))


@router.put("/api/v1/schedules/{schedule_id}", summary="Replace an imperative schedule")
def update_schedule(
    auth: Caller, schedule_id: str, body: UpdateBody, session: DbSession
) -> JSONResponse:
    return _render(session, auth, service.update_schedule(session, auth, schedule_id, body))


@router.delete("/api/v1/schedules/{schedule_id}", summary="Delete an imperative schedule")
def delete_schedule(auth: Caller, schedule_id: str, session: DbSession) -> JSONResponse:
    return JSONResponse({"id": service.delete_schedule(session, auth, schedule_id)})


@router.post("/api/v1/schedules/{schedule_id}/activate", summary="Activate a schedule")
def activate_schedule(auth: Caller, schedule_id: str, session: DbSession) -> JSONResponse:
    return _render(session, auth, service.set_active(session, auth, schedule_id, True))


@router.post("/api/v1/schedules/{schedule_id}/deactivate", summary="Deactivate a schedule")
def deactivate_schedule(auth: Caller, schedule_id: str, session: DbSession) -> JSONResponse:
    return _render(session, auth, service.set_active(session, auth, schedule_id, False))


@router.get("/api/v1/timezones", summary="The IANA timezones schedules accept (no key needed)")
def list_timezones(exclude_utc: Annotated[str | None, Query(alias="excludeUtc")] = None) -> JSONResponse:
    return JSONResponse({"timezones": timezones(include_utc=exclude_utc != "true")})
