"""Sign-in, sign-out, the environment switcher and the vendored assets; the runs, bulk,
schedules, queues and overview pages are in :mod:`api.dashboard.runs`,
:mod:`api.dashboard.bulk`, :mod:`api.dashboard.schedules`, :mod:`api.dashboard.queues` and
:mod:`api.dashboard.overview`."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from reprise_server.api.dashboard import (
    bulk,
    keys,
    overview,
    queues,
    runs,
    schedules,
    search,
    tasks,
    waitpoints,
)
from reprise_server.api.dashboard.web import (
    COOKIE,
    HERE,
    PRE_CSRF_COOKIE,
    PREFIX,
    Form,
    checked_form,
    page,
    refused,
    set_session_cookie,
    signed_in,
)
from reprise_server.api.deps import DbSession
from reprise_server.shared.errors import NotFound, Unauthorized
from reprise_server.shared.sessions.service import (
    redeem_sign_in_link,
    sign_in,
    sign_out,
    switch_environment,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)
router.include_router(runs.router)
router.include_router(bulk.router)
router.include_router(schedules.router)
router.include_router(queues.router)
router.include_router(overview.router)
router.include_router(waitpoints.router)
router.include_router(tasks.router)
router.include_router(search.router)
router.include_router(keys.router)

ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript",
          "favicon.svg": "image/svg+xml"}


# Browsers ask the site's root for its icon on pages that link none (/docs, the API's JSON).
favicon_router = APIRouter(include_in_schema=False)


@favicon_router.get("/favicon.ico")
def favicon() -> Response:
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml",
                        headers={"cache-control": "public, max-age=86400"})


def _safe_next(target: str | None) -> str:
    """Only a dashboard path (never another site) after signing in."""
    if target and target.startswith(f"{PREFIX}/") and not target.startswith("//"):
        return target
    return f"{PREFIX}/runs"


@router.get("")
@router.get("/")
def home(request: Request, session: DbSession) -> Response:
    if signed_in(request, session) is None:
        return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    return RedirectResponse(f"{PREFIX}/runs", status_code=303)


@router.get("/static/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound("Not found")
    return FileResponse(HERE / "static" / name, media_type=ASSETS[name],
                        headers={"cache-control": "public, max-age=300"})


def _sign_in_page(request: Request, error: str | None = None, status_code: int = 200
                  ) -> Response:
    # Signing in has no session yet: its form is protected by a double-submit token.
    token = request.cookies.get(PRE_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = page("sign_in.html", status_code, signed=None, error=error, csrf_token=token,
                    next=_safe_next(request.query_params.get("next")))
    response.set_cookie(PRE_CSRF_COOKIE, token, httponly=True, samesite="lax", path=PREFIX)
    return response


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


@router.post("/sign-in")
def sign_in_submit(request: Request, session: DbSession, form: Form) -> Response:
    expected = request.cookies.get(PRE_CSRF_COOKIE)
    if not expected or not secrets.compare_digest(expected, form.get("csrf_token", "")):
        return refused(403, "This form was refused: its CSRF token is missing or wrong. "
                            "Reload the page and try again.")
    try:
        token = sign_in(session, form.get("secret_key", ""))
    except Unauthorized:
        return _sign_in_page(request, "That secret key is not valid (or was revoked).", 401)
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    set_session_cookie(response, request, token)
    return response


@router.get("/sign-in/{link}")
def sign_in_link(link: str, request: Request) -> Response:
    """A one-time link asks before it signs in: opening it (a GET, which a link preview,
    a mail scanner or another site's page can make) spends nothing and signs nobody in;
    the button posts it back with the page's CSRF token."""
    token = request.cookies.get(PRE_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = page("sign_in_link.html", 200, signed=None, error=None, csrf_token=token,
                    link=link)
    response.set_cookie(PRE_CSRF_COOKIE, token, httponly=True, samesite="lax", path=PREFIX)
    return response


@router.post("/sign-in/{link}")
def sign_in_link_submit(link: str, request: Request, session: DbSession, form: Form
                        ) -> Response:
    expected = request.cookies.get(PRE_CSRF_COOKIE)
    if not expected or not secrets.compare_digest(expected, form.get("csrf_token", "")):
        return refused(403, "This form was refused: its CSRF token is missing or wrong. "
                            "Open the link again and try again.")
    try:
        token = redeem_sign_in_link(session, link)
    except NotFound as exc:
        return _sign_in_page(request, exc.message, 404)
    response = RedirectResponse(f"{PREFIX}/runs", status_code=303)
    set_session_cookie(response, request, token)
    return response


@router.post("/sign-out")
def sign_out_submit(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    sign_out(session, signed)
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.post("/environment")
def switch(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, {**form, "env": ""})
    if isinstance(signed, Response):
        return signed
    try:
        env = switch_environment(session, signed, form.get("environment", ""))
    except NotFound as exc:
        return refused(404, exc.message)
    return RedirectResponse(f"{PREFIX}/runs?env={env.slug}", status_code=303)
