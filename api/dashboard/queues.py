"""Queues in the dashboard: the environment's queues and concurrency limits with their
numbers and waits (:mod:`shared.flow.overview`), and their actions, each confirmed in a
dialog first: pause and resume (queues and limits), override and reset (limits). Each
action is the REST API's service (:mod:`shared.flow.queues`, :mod:`shared.flow.limits`);
its error is shown in the dialog and nothing is written."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from reprise_server.api.dashboard.web import PREFIX, Form, checked_form, page, signed_in, to_sign_in
from reprise_server.api.deps import DbSession
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.flow import limits, queues
from reprise_server.shared.flow.overview import read_overview
from reprise_server.shared.sessions.service import SignedIn

router = APIRouter()

PER_PAGE = 100
# The confirmation dialogs: ?dialog=<name>&queue=<queue id> or &limit=<limit name>.
QUEUE_DIALOGS = ("pause-queue", "resume-queue")
LIMIT_DIALOGS = ("pause-limit", "resume-limit", "override-limit", "reset-limit")


def _page_number(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and int(raw) > 0 else 1


def _queues_page(request: Request, session: Session, signed: SignedIn, *,
                 dialog: str | None = None, target: str | None = None,
                 error: str | None = None, values: dict[str, str] | None = None,
                 status_code: int = 200) -> Response:
    params = request.query_params
    number = _page_number(params.get("page"))
    dialog = dialog or params.get("dialog")
    if dialog in QUEUE_DIALOGS:
        target = target or params.get("queue")
    elif dialog in LIMIT_DIALOGS:
        target = target or params.get("limit")
    else:
        dialog = None
    overview = read_overview(session, signed.auth.environment_id, number, PER_PAGE)
    subject: dict[str, Any] | None = None
    if dialog and target:
        try:
            subject = (
                queues.retrieve(session, signed.auth.environment_id, queues.find_queue(
                    session, signed.auth.environment_id, target, "id"))
                if dialog in QUEUE_DIALOGS
                else limits.retrieve(session, signed.auth.environment_id, target)
            )
        except RepriseError as exc:
            error, status_code = exc.message, exc.status_code
    pages = max(overview.queue_count, overview.limit_count, 1)
    return page(
        "queues.html", status_code, signed=signed, overview=overview, now=signed.now,
        page_number=number, has_next=number * PER_PAGE < pages, dialog=dialog,
        subject=subject, target=target, error=error, values=values or {},
        env_slug=signed.auth.environment_slug,
    )


@router.get("/queues")
def queues_list(request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    return _queues_page(request, session, signed)


def _done(signed: SignedIn) -> Response:
    return RedirectResponse(f"{PREFIX}/queues?env={signed.auth.environment_slug}",
                            status_code=303)


def _failed(request: Request, session: Session, signed: SignedIn, dialog: str, target: str,
            message: str, form: dict[str, str], status_code: int = 400) -> Response:
    session.rollback()  # nothing of a refused action is written
    return _queues_page(request, session, signed, dialog=dialog, target=target,
                        error=message, values=form, status_code=status_code)


def _pause_action(request: Request, session: Session, form: dict[str, str], kind: str,
                  paused: bool) -> Response:
    """Pause or resume the queue (``kind`` "queue", by id) or limit ("limit", by name) the
    confirmed form names; a refusal reopens its dialog with the error."""
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    target = form.get(kind, "")
    try:
        if kind == "queue":
            queues.set_paused(session, signed.auth.environment_id, target, "id", paused)
        else:
            limits.set_paused(session, signed.auth.environment_id, target, paused)
    except RepriseError as exc:
        dialog = f"{'pause' if paused else 'resume'}-{kind}"
        return _failed(request, session, signed, dialog, target, exc.message, form,
                       exc.status_code)
    return _done(signed)


@router.post("/queues/pause")
def pause_queue(request: Request, session: DbSession, form: Form) -> Response:
    return _pause_action(request, session, form, "queue", True)


@router.post("/queues/resume")
def resume_queue(request: Request, session: DbSession, form: Form) -> Response:
    return _pause_action(request, session, form, "queue", False)


@router.post("/limits/pause")
def pause_limit(request: Request, session: DbSession, form: Form) -> Response:
    return _pause_action(request, session, form, "limit", True)


@router.post("/limits/resume")
def resume_limit(request: Request, session: DbSession, form: Form) -> Response:
    return _pause_action(request, session, form, "limit", False)


def override_bounds(form: dict[str, str]) -> tuple[int | None, int | None]:
    """The ``total`` and ``perKey`` fields of the override form: each blank (kept as it
    is) or a whole number from 0 to the largest bound; at least one given."""
    found: dict[str, int | None] = {}
    for field, label in (("total", "Total"), ("perKey", "Per key")):
        raw = form.get(field, "").strip()
        if not raw:
            found[field] = None
            continue
        if not raw.isdigit() or int(raw) > limits.MAX_BOUND:
            raise ValueError(f"{label} must be a whole number from 0 to {limits.MAX_BOUND} "
                             f"(got {raw!r})")
        found[field] = int(raw)
    if found["total"] is None and found["perKey"] is None:
        raise ValueError("Give a total, a per-key bound, or both")
    return found["total"], found["perKey"]


@router.post("/limits/override")
def override_limit(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    target = form.get("limit", "")
    try:
        total, per_key = override_bounds(form)
        limits.override(session, signed.auth.environment_id, target, total=total,
                        per_key=per_key)
    except ValueError as exc:
        return _failed(request, session, signed, "override-limit", target, str(exc), form)
    except RepriseError as exc:
        return _failed(request, session, signed, "override-limit", target, exc.message, form,
                       exc.status_code)
    return _done(signed)


@router.post("/limits/reset")
def reset_limit(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    target = form.get("limit", "")
    try:
        limits.reset(session, signed.auth.environment_id, target)
    except RepriseError as exc:
        return _failed(request, session, signed, "reset-limit", target, exc.message, form,
                       exc.status_code)
    return _done(signed)
