"""Schedules in the dashboard: the environment's cron schedules with their next ticks, each
linking to the runs its ticks created. The list is :mod:`shared.schedules.service`'s, as
``GET /api/v1/schedules`` gives it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reprise_server.api.dashboard.web import page, signed_in, to_sign_in
from reprise_server.api.deps import DbSession
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.schedules import service
from reprise_server.shared.schedules.cron import Cron

router = APIRouter()

PER_PAGE = 50


def _description(expression: str, timezone: str) -> str:
    try:
        return Cron.parse(expression, timezone).describe()
    except RepriseError:
        return ""


@router.get("/schedules")
def schedules_list(request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
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
    return page("schedules.html", signed=signed, rows=rows, found=found, now=signed.now)
