"""API keys in the dashboard: the secret keys of the signed-in project's environments
(:func:`shared.projects.service.list_project_keys`, as ``reprise keys list`` shows them),
creating one (its secret shown once, in the answer to the form: never stored, so never
shown again) and revoking one, confirmed in a dialog first. Each form carries the
session's CSRF token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from reprise_server.api.dashboard.web import PREFIX, Form, checked_form, page, signed_in, to_sign_in
from reprise_server.api.deps import DbSession
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.projects.service import (
    create_project_key,
    list_project_keys,
    revoke_project_key,
)
from reprise_server.shared.sessions.service import SignedIn

router = APIRouter()


def _keys_page(request: Request, session: Session, signed: SignedIn, *,
               created: tuple[str, str] | None = None, error: str | None = None,
               dialog: str | None = None, target: str | None = None,
               status_code: int = 200) -> Response:
    keys = list_project_keys(session, signed.auth.project_id)
    params = request.query_params
    if dialog is None and params.get("dialog") == "revoke":
        dialog, target = "revoke", params.get("key")
    subject = next((k for k in keys if k.id == target), None) if dialog else None
    if dialog and subject is None and error is None:
        error, status_code = "API key not found", 404
    return page("keys.html", status_code, signed=signed, keys=keys, created=created,
                error=error, dialog=dialog, subject=subject, target=target,
                env_slug=signed.auth.environment_slug, now=signed.now)


@router.get("/api-keys")
def keys_list(request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    return _keys_page(request, session, signed)


@router.post("/api-keys")
def create(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    environment = form.get("environment", "")
    try:
        secret = create_project_key(session, signed.auth.project_id, environment)
    except RepriseError as exc:
        session.rollback()
        return _keys_page(request, session, signed, error=exc.message,
                          status_code=exc.status_code)
    # Answered, not redirected: this page is the only time the secret is shown.
    return _keys_page(request, session, signed, created=(environment, secret))


@router.post("/api-keys/revoke")
def revoke(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    target = form.get("key", "")
    try:
        revoke_project_key(session, signed.auth.project_id, target)
    except RepriseError as exc:
        session.rollback()
        return _keys_page(request, session, signed, error=exc.message, dialog="revoke",
                          target=target, status_code=exc.status_code)
    return RedirectResponse(f"{PREFIX}/api-keys?env={signed.auth.environment_slug}",
                            status_code=303)
