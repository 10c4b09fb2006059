"""Waitpoint tokens in the dashboard: the environment's tokens (newest first, filtered by
status and tag, a page at a time) and completing a waiting one with JSON data, from this
list or from the page of a run that waits for it. Both are :mod:`shared.durable.tokens`'
services, as ``GET /api/v1/waitpoints/tokens`` and its ``complete`` route use them."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from reprise_server.api.dashboard.runs import run_page
from reprise_server.api.dashboard.web import PREFIX, Form, checked_form, page, signed_in, to_sign_in
from reprise_server.api.deps import DbSession
from reprise_server.shared.dashboard import runs_waiting_on
from reprise_server.shared.durable import tokens
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.payloads import NotJson, read_json
from reprise_server.shared.sessions.service import SignedIn

router = APIRouter()

PAGE_SIZE = 25
FILTER_KEYS = ("status", "tag")


def _list_page(request: Request, session: Session, signed: SignedIn, params: dict[str, str],
               *, dialog: str | None = None, error: str | None = None,
               values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    filters = {key: params[key] for key in FILTER_KEYS if params.get(key)}
    found, list_error = None, None
    try:
        tags = [t.strip() for t in filters.get("tag", "").split(",") if t.strip()]
        found = tokens.list_tokens(
            session, signed.auth,
            tokens.TokenFilter(statuses=tokens.parse_statuses(filters.get("status")),
                               tags=tags or None),
            size=PAGE_SIZE, after=params.get("after") or None,
            before=params.get("before") or None,
        )
    except RepriseError as exc:
        list_error = exc.message
    dialog = dialog or params.get("dialog")
    waiting = {t.id for t in (found.tokens if found else []) if t.status == "WAITING"}
    if dialog and dialog.removeprefix("complete-") not in waiting:
        dialog = None  # no such dialog on this page: an error shows above the list
    blocked = runs_waiting_on(session, [t.id for t in found.tokens]) if found else {}
    query = urlencode(filters)
    here = f"{PREFIX}/waitpoints?{query}&env={signed.auth.environment_slug}"
    for cursor in ("after", "before"):
        if params.get(cursor):
            here += f"&{cursor}={params[cursor]}"
    return page("waitpoints.html", status_code, signed=signed, found=found, filters=filters,
                statuses=tokens.STATUSES, list_error=list_error, query=query, here=here,
                env_slug=signed.auth.environment_slug, now=signed.now,
                blocked=blocked, dialog=dialog, error=error, values=values or {})


@router.get("/waitpoints")
def waitpoints_list(request: Request, session: DbSession) -> Response:
    params = dict(request.query_params)
    signed = signed_in(request, session, params.get("env"))
    if signed is None:
        return to_sign_in(request)
    return _list_page(request, session, signed, params)


def _back(form: dict[str, str], env_slug: str) -> str:
    """Where a completion returns: the run page it came from, else the waitpoints list
    (only a dashboard path, never another site)."""
    target = form.get("back", "")
    if target.startswith(f"{PREFIX}/") and not target.startswith("//"):
        return target
    return f"{PREFIX}/waitpoints?env={env_slug}"


@router.post("/waitpoints/{token_id}/complete")
def complete(token_id: str, request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    text = form.get("data", "").strip() or "{}"
    message: str | None = None
    data: Any = None
    try:
        data = read_json(text.encode())
    except NotJson as exc:
        message = f"Data is not valid JSON ({exc.message})"
    except RepriseError as exc:
        message = f"Data: {exc.message}"
    if message is None:
        try:
            if not tokens.complete_token(session, signed.auth, token_id, data):
                message = ("This token was completed (or timed out) before: it keeps what it "
                           "had, and its runs were already resumed.")
        except RepriseError as exc:
            message = exc.message
    back = _back(form, signed.auth.environment_slug)
    if message is None:
        return RedirectResponse(back, status_code=303)
    session.rollback()  # nothing of a refused completion is written
    values = {"data": form.get("data", ""), "token": token_id}
    if form.get("run"):
        return run_page(request, session, signed, form["run"], dialog="complete-token",
                        error=message, values=values, status_code=400)
    params = dict(parse_qsl(urlsplit(back).query))
    return _list_page(request, session, signed, params, dialog=f"complete-{token_id}",
                      error=message, values=values, status_code=400)
