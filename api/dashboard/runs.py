"""The runs list, the run page, and its actions: replay, reschedule, cancel. Each action is
the REST API's service (same command, same validation); its error is shown in the dialog
and nothing is written."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from reprise_server.api.dashboard.web import (
    ACTIVE,
    PREFIX,
    SECURITY_HEADERS,
    Form,
    checked_form,
    page,
    signed_in,
    to_sign_in,
)
from reprise_server.api.deps import DbSession, api_applier
from reprise_server.shared.commands.errors import ReplayFailed
from reprise_server.shared.commands.schemas import ReplayRequest
from reprise_server.shared.commands.service import accept_replay, accept_reschedule
from reprise_server.shared.dashboard import (
    error_summaries,
    read_run_page,
    run_durations,
    run_head,
    waiting_reasons,
)
from reprise_server.shared.errors import RepriseError, RunNotFound
from reprise_server.shared.ids import is_run_id
from reprise_server.shared.payloads import NotJson, read_json, reject_unstorable
from reprise_server.shared.reads import read_page, visible_run
from reprise_server.shared.runlogs.reader import (
    LEVELS,
    attempt_error_json,
    attempt_errors,
    line_to_json,
    read_logs,
    with_attempt_errors,
)
from reprise_server.shared.runs import attempts_repository as attempts_repo
from reprise_server.shared.runs.filters import FilterWording, RunFilter
from reprise_server.shared.runs.listing import PageRequest, RunQuery
from reprise_server.shared.runs.service import cancel_run
from reprise_server.shared.runs.states import CURRENT_API_VERSION, RunStatus
from reprise_server.shared.sessions.service import SignedIn

router = APIRouter()

PAGE_SIZE = 25
STATUSES = [s.value for s in RunStatus if s is not RunStatus.RETRYING]


_WORDING = FilterWording(
    unknown_status="unknown status: {value}",
    created_from="Created from must be a date and time",
    created_to="Created to must be a date and time",
)


def list_filter(params: dict[str, str]) -> RunFilter:
    """The runs list's filter from its query (the same fields as the API's list)."""
    reject_unstorable(params, "filter")
    return RunFilter.build(
        _WORDING,
        api_version=CURRENT_API_VERSION,
        statuses=params.get("status"),
        task_identifiers=params.get("task"),
        tags=params.get("tag"),
        versions=params.get("version"),
        created_from=params.get("from"),
        created_to=params.get("to"),
        replays_only=params.get("replays") == "1",
        not_replayed=params.get("not_replayed") == "1",
        bulk_action_id=params.get("bulk"),
        schedule_id=params.get("schedule"),
        error_fingerprint=params.get("error"),
        batch_id=params.get("batch"),
    )


FILTER_KEYS = ("status", "task", "tag", "version", "from", "to", "replays", "not_replayed",
               "bulk", "schedule", "error", "batch")


@router.get("/runs")
def runs_list(request: Request, session: DbSession) -> Response:
    params = dict(request.query_params)
    signed = signed_in(request, session, params.get("env"))
    if signed is None:
        return to_sign_in(request)
    filters = {key: params[key] for key in FILTER_KEYS if params.get(key)}
    error, runs, next_cursor, previous_cursor = None, [], None, None
    try:
        after, before = params.get("after"), params.get("before")
        for cursor in (after, before):
            if cursor and not is_run_id(cursor):
                raise ValueError("page cursors are run ids")
        query = RunQuery(list_filter(params), PageRequest(PAGE_SIZE, after or None,
                                                          before or None))
        found = read_page(session, signed.auth, query, api_applier())
        runs, next_cursor, previous_cursor = found.runs, found.next_cursor, found.previous_cursor
    except (ValueError, RepriseError) as exc:
        error = getattr(exc, "message", None) or str(exc)
    context: dict[str, Any] = {
        "signed": signed, "runs": runs, "filters": filters, "statuses": STATUSES, "error": error,
        "next_cursor": next_cursor, "previous_cursor": previous_cursor,
        "active": any(run.status in ACTIVE for run in runs), "now": signed.now,
        "reasons": waiting_reasons(session, runs),
        "durations": run_durations(session, runs, signed.now),
        "errors": error_summaries(runs),
    }
    if params.get("fragment") == "rows":
        return page("_runs_rows.html", **context)
    return page("runs.html", **context)


def run_page(request: Request, session: Session, signed: SignedIn, run_id: str, *,
              dialog: str | None = None, error: str | None = None,
              values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    try:
        data = read_run_page(session, signed.auth, run_id, api_applier())
    except RepriseError as exc:
        return page("message.html", exc.status_code, signed=signed, title="Run not found",
                    message=exc.message)
    run = data.view.run
    template = "_run_body.html" if request.query_params.get("fragment") == "body" else "run.html"
    log_level = request.query_params.get("log_level", "")
    log_search = request.query_params.get("log_search", "")
    logs, log_entries, log_error = None, [], None
    if template == "run.html":
        try:
            # The attempts were read first: a failed attempt's lines were all written
            # before its outcome, so none is missing from the lines read after.
            errors = attempt_errors(data.view.attempts, level=log_level or None,
                                    search=log_search or None)
            logs = read_logs(session, run.id, level=log_level or None, search=log_search or None)
            log_entries = with_attempt_errors(logs.lines, errors, complete=not logs.has_more)
        except ValueError as exc:
            log_error = str(exc)
    return page(
        template, status_code, signed=signed, page=data, run=run, now=signed.now,
        active=run.status in ACTIVE, dialog=dialog or request.query_params.get("dialog"),
        error=error, values=values or {}, env_slug=signed.auth.environment_slug,
        payload_text=json.dumps(run.payload, indent=2, ensure_ascii=False),
        can_cancel=run.status in ACTIVE, can_reschedule=run.status == RunStatus.DELAYED,
        logs=logs, log_entries=log_entries, log_error=log_error, log_level=log_level,
        log_search=log_search, log_levels=LEVELS,
    )


@router.get("/runs/{run_id}")
def run_detail(run_id: str, request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    return run_page(request, session, signed, run_id)


@router.get("/runs/{run_id}/logs.json")
def run_logs(run_id: str, request: Request, session: DbSession) -> Response:
    """The logs panel's reads: the run's lines after the ``after`` cursor (a seq), at or
    above ``level``, containing ``search``, and the errors of its failed attempts kept by
    the same filter (``attemptErrors``: the panel places each after its attempt's lines);
    ``active`` tells the panel to keep tailing."""
    params = request.query_params
    signed = signed_in(request, session, params.get("env"))
    if signed is None:
        return JSONResponse({"error": "not signed in"}, status_code=401, headers=SECURITY_HEADERS)
    try:
        run = visible_run(session, signed.auth, run_id, api_applier())
        after = int(params["after"]) if params.get("after") else None
        # Attempts before lines: a failed attempt's lines were all written before its outcome.
        errors = attempt_errors(attempts_repo.attempts_of(session, [run.id])[run.id],
                                level=params.get("level") or None,
                                search=params.get("search") or None)
        found = read_logs(session, run.id, after=after, level=params.get("level") or None,
                          search=params.get("search") or None)
    except RepriseError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status_code,
                            headers=SECURITY_HEADERS)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400, headers=SECURITY_HEADERS)
    return JSONResponse({"lines": [line_to_json(line) for line in found.lines],
                         "attemptErrors": [attempt_error_json(error) for error in errors],
                         "after": found.after, "hasMore": found.has_more,
                         "active": run.status in ACTIVE}, headers=SECURITY_HEADERS)


def _run_url(run_id: str, env_slug: str) -> str:
    return f"{PREFIX}/runs/{run_id}?env={env_slug}"


def _failed(request: Request, session: Session, signed: SignedIn, run_id: str, dialog: str,
            message: str, form: dict[str, str]) -> Response:
    session.rollback()  # nothing of a refused action is written
    return run_page(request, session, signed, run_id, dialog=dialog, error=message,
                     values=form, status_code=400)


def _message(exc: RepriseError) -> str:
    detail = getattr(exc, "detail", "")
    return f"{exc.message}: {detail}" if isinstance(exc, ReplayFailed) and detail else exc.message


def _start_from(form: dict[str, str]) -> tuple[int | None, str | None]:
    """The replay dialog's "Start from": the beginning (""), a step of the record
    (``step:<position or name>``, sent as ``fromStep``) or a checkpoint
    (``checkpoint:<number>``; a bare ``checkpoint`` field is read too)."""
    choice = form.get("start_from", "")
    kind, _, value = choice.partition(":")
    if kind == "step" and value:
        return None, value
    if kind == "checkpoint" and value:
        return int(value), None
    if choice:
        raise ValueError(f"Start from: unknown choice {choice!r}")
    return (int(form["checkpoint"]) if form.get("checkpoint") else None), None


@router.post("/runs/{run_id}/replay")
def replay(run_id: str, request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    text = form.get("payload", "")
    try:
        # As the REST routes read JSON: NaN, infinities, lone surrogates and deep nesting
        # are refused naming where, never a 500.
        payload = read_json(text.encode())
    except NotJson as exc:
        return _failed(request, session, signed, run_id, "replay",
                       f"Payload is not valid JSON ({exc.message})", form)
    except RepriseError as exc:
        return _failed(request, session, signed, run_id, "replay", f"Payload: {exc.message}",
                       form)
    try:
        head = run_head(session, signed.auth, run_id)
        source = visible_run(session, signed.auth, run_id, api_applier())
        body: dict[str, Any] = {"environment": form.get("environment") or None}
        if payload != source.payload:  # unchanged keeps the original's payload type
            body["payload"] = payload
        checkpoint, from_step = _start_from(form)
        if from_step is not None:
            body["fromStep"] = from_step
        accepted = accept_replay(session, signed.auth, head, ReplayRequest.model_validate(body),
                                 checkpoint=checkpoint)
    except RepriseError as exc:
        return _failed(request, session, signed, run_id, "replay", _message(exc), form)
    except ValueError as exc:
        return _failed(request, session, signed, run_id, "replay", str(exc), form)
    target = form.get("environment") or signed.auth.environment_slug
    return RedirectResponse(_run_url(accepted.target_run_id, target), status_code=303)


@router.post("/runs/{run_id}/reschedule")
def reschedule(run_id: str, request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    delay = form.get("delay", "").strip()
    try:
        if not delay:
            raise ValueError("Give a delay: a duration such as 3h, or an ISO date-time")
        head = run_head(session, signed.auth, run_id, lock=True)
        accept_reschedule(session, signed.auth, head, delay, api_applier())
    except RepriseError as exc:
        return _failed(request, session, signed, run_id, "reschedule", exc.message, form)
    except ValueError as exc:
        return _failed(request, session, signed, run_id, "reschedule", str(exc), form)
    return RedirectResponse(_run_url(run_id, signed.auth.environment_slug), status_code=303)


@router.post("/runs/{run_id}/cancel")
def cancel(run_id: str, request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    try:
        run = visible_run(session, signed.auth, run_id, api_applier())
    except (RepriseError, RunNotFound) as exc:
        return _failed(request, session, signed, run_id, "cancel", exc.message, form)
    cancel_run(session, run.id)
    return RedirectResponse(_run_url(run_id, signed.auth.environment_slug), status_code=303)
