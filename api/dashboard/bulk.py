"""Bulk actions in the dashboard: replay or cancel the runs of the current filter or of a
selection, with a name, a preview of how many runs it will touch, and a progress page.
The action is :mod:`shared.bulk.service`'s, as ``POST /api/v1/bulk-actions`` makes it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from reprise_server.api.dashboard.runs import FILTER_KEYS, list_filter
from reprise_server.api.dashboard.web import (
    PREFIX,
    Form,
    checked_form,
    form_list,
    page,
    signed_in,
    to_sign_in,
)
from reprise_server.api.deps import DbSession
from reprise_server.shared.bulk import service
from reprise_server.shared.bulk.models import BulkKind
from reprise_server.shared.bulk.schemas import MAX_RUN_IDS, freeze
from reprise_server.shared.db import db_now
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.ids import is_run_id
from reprise_server.shared.runs.filters import RunFilter
from reprise_server.shared.runs.listing import PageRequest
from reprise_server.shared.sessions.service import SignedIn

router = APIRouter()


def _selection(session: Session, params: dict[str, str], ids: list[str]) -> RunFilter:
    if ids:
        if len(ids) > MAX_RUN_IDS:
            raise ValueError(f"Select at most {MAX_RUN_IDS} runs, or use a filter")
        bad = next((i for i in ids if not is_run_id(i)), None)
        if bad:
            raise ValueError(f"Not a run ID: {bad}")
        return RunFilter(run_ids=tuple(sorted(set(ids))))
    if not any(params.get(key) for key in FILTER_KEYS):
        raise ValueError("Select runs, or set a filter: a bulk action by filter needs at "
                         "least one field")
    return freeze(list_filter(params), db_now(session))


def _spec(session: Session, params: dict[str, str], ids: list[str]) -> service.BulkSpec:
    kind = BulkKind(params.get("action") or "replay")
    if kind is BulkKind.RESCHEDULE:
        raise ValueError("Reschedule in bulk through the API (it needs a delay)")
    return service.BulkSpec(kind, _selection(session, params, ids),
                            (params.get("name") or "").strip() or None, source="dashboard")


def new_page(request: Request, session: Session, signed: SignedIn, params: dict[str, str],
              ids: list[str], error: str | None = None, status_code: int = 200) -> Response:
    preview = None
    try:
        preview = service.preview(session, signed.auth, _spec(session, params, ids))
    except (ValueError, RepriseError) as exc:
        error = error or getattr(exc, "message", None) or str(exc)
        status_code = 400
    filters = {key: params[key] for key in FILTER_KEYS if params.get(key)}
    return page("bulk_new.html", status_code, signed=signed, preview=preview, error=error,
                filters=filters, ids=ids, action=params.get("action") or "replay",
                name=params.get("name", ""))


@router.get("/bulk/new")
def bulk_new(request: Request, session: DbSession) -> Response:
    params = dict(request.query_params)
    signed = signed_in(request, session, params.get("env"))
    if signed is None:
        return to_sign_in(request)
    return new_page(request, session, signed, params, request.query_params.getlist("ids"))


@router.post("/bulk")
def bulk_create(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    ids = form_list(request, "ids")
    try:
        bulk = service.create_bulk_action(session, signed.auth, _spec(session, form, ids))
    except (ValueError, RepriseError) as exc:
        session.rollback()
        return new_page(request, session, signed, form, ids,
                         getattr(exc, "message", None) or str(exc), 400)
    env = signed.auth.environment_slug
    return RedirectResponse(f"{PREFIX}/bulk/{bulk.id}?env={env}", status_code=303)


@router.get("/bulk")
def bulk_list(request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    after = request.query_params.get("after") or None
    found = service.list_bulk_actions(session, signed.auth, PageRequest(25, after, None))
    return page("bulk_list.html", signed=signed, actions=found.actions,
                next_cursor=found.next_cursor, now=signed.now)


@router.get("/bulk/{bulk_id}")
def bulk_detail(bulk_id: str, request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    try:
        bulk = service.get_bulk_action(session, signed.auth, bulk_id)
    except RepriseError as exc:
        return page("message.html", exc.status_code, signed=signed, title="Not found",
                    message=exc.message)
    template = "_bulk_progress.html" if request.query_params.get("fragment") else "bulk.html"
    return page(template, signed=signed, bulk=bulk, now=signed.now)


@router.post("/bulk/{bulk_id}/abort")
def bulk_abort(bulk_id: str, request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    try:
        service.abort_bulk_action(session, signed.auth, bulk_id)
    except RepriseError as exc:
        session.rollback()
        return page("message.html", exc.status_code, signed=signed, title="Not aborted",
                    message=exc.message)
    env = signed.auth.environment_slug
    return RedirectResponse(f"{PREFIX}/bulk/{bulk_id}?env={env}", status_code=303)
