"""What every dashboard page shares: templates, the session cookie, forms and CSRF."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from reprise_server.api.deps import DbSession
from reprise_server.shared.durations import iso
from reprise_server.shared.errors import NotFound
from reprise_server.shared.runs.states import RunStatus
from reprise_server.shared.runs.trace import wait_words
from reprise_server.shared.sessions.service import SignedIn, resolve
from reprise_server.shared.settings import get_settings

HERE = Path(__file__).parent
COOKIE = "reprise_session"
PRE_CSRF_COOKIE = "reprise_signin_csrf"
PREFIX = "/dashboard"

ACTIVE = frozenset({
    RunStatus.PENDING_VERSION, RunStatus.QUEUED, RunStatus.DEQUEUED, RunStatus.EXECUTING,
    RunStatus.DELAYED, RunStatus.RETRYING, RunStatus.WAITING,
})


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size or unit == "s":
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return ""


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min {ms % 60_000 // 1000} s"


def span_ms(value: float) -> str:
    """A span's duration: ``<1 ms`` rather than a false zero, else as :func:`duration`."""
    return "<1 ms" if value < 1 else duration(round(value))


def executed(trace: Any, run: Any) -> str:
    """How long the run executed: its attempts' spans summed (an attempt stopped by a cancel
    counts until the cancel), or the usage the worker recorded if that is more."""
    if run.started_at is None:
        return "-"
    spans = trace.execution_ms() if trace is not None else 0.0
    return span_ms(max(float(run.duration_ms or 0), spans))


def seconds(value: float | None) -> str:
    """A wait: ``-`` for none, else seconds, minutes or hours (``4.2 s``, ``3 min 5 s``)."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f} s"
    whole = int(value)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def status_class(status: Any) -> str:
    value = str(getattr(status, "value", status))
    if value in ("COMPLETED", "APPLIED"):
        return "ok"
    if value in ("FAILED", "CRASHED", "SYSTEM_FAILURE", "TIMED_OUT", "EXPIRED", "REJECTED",
                 "ABORTED"):
        return "bad"
    if value in ("CANCELED",):
        return "muted"
    if value in ("DELAYED", "PENDING_VERSION", "PENDING", "WAITING", "PAUSED"):
        return "wait"
    return "run"


TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
    trim_blocks=True, lstrip_blocks=True,
)
TEMPLATES.filters.update(relative=relative, pretty=pretty, iso=iso, duration=duration,
                         status_class=status_class, seconds=seconds,
                         span_ms=span_ms, executed=executed, wait_words=wait_words)


def flower_url() -> str:
    """Flower's address for operators (``REPRISE_FLOWER_URL``), or "" (no link)."""
    url = get_settings().flower_url.strip()
    # Only a web address becomes a link (never a ``javascript:`` one).
    return url if url.startswith(("http://", "https://")) else ""


TEMPLATES.globals.update(prefix=PREFIX, flower_url=flower_url)


# Every asset is the dashboard's own: nothing else may load, frame it or receive its forms.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(template).render(**context),
                        status_code=status_code, headers=SECURITY_HEADERS)


def to_sign_in(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/sign-in?next={quote(target)}", status_code=303)


def refused(status_code: int, message: str) -> HTMLResponse:
    return page("message.html", status_code, title="Refused", message=message, signed=None)


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax", path=PREFIX,
                        secure=request.url.scheme == "https")


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the dashboard's forms), last value of
    each field; repeated fields (``runIds``) are read with :func:`form_list`."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    fields = parse_qs(raw, keep_blank_values=True)
    request.state.form_lists = fields
    return {key: values[-1] for key, values in fields.items()}


Form = Annotated[dict[str, str], Depends(_form)]


def form_list(request: Request, name: str) -> list[str]:
    return list(getattr(request.state, "form_lists", {}).get(name, []))


def signed_in(request: Request, session: DbSession, env: str | None = None) -> SignedIn | None:
    """The page's session, showing ``env`` (a slug) when given; None when signed out."""
    try:
        return resolve(session, request.cookies.get(COOKIE), env)
    except NotFound:
        return None


def checked_form(request: Request, session: DbSession, form: dict[str, str]
                 ) -> SignedIn | HTMLResponse:
    """The session of a form post, refused without a session (401) or with a CSRF token
    that is not the session's (403): nothing is done for either."""
    signed = signed_in(request, session, form.get("env") or None)
    if signed is None:
        return refused(401, "You are not signed in (or your session ended): sign in again.")
    if not signed.check_csrf(form.get("csrf_token")):
        return refused(403, "This form was refused: its CSRF token is missing or not this "
                            "session's. Reload the page and try again.")
    return signed
