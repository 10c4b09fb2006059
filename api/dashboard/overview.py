"""The Overview page: what ran and what is failing in the environment over a window (last
hour, day, week): runs per bucket by final status, queue wait and duration p50/p95 and the
failure rate per task (server-drawn SVG: :mod:`api.dashboard.charts`), and the window's
error groups (:mod:`shared.overview.queries`) with their runs, a bulk replay of exactly
them, and ignore / unignore."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from reprise_server.api.dashboard import bulk
from reprise_server.api.dashboard.charts import HALF_WIDTH, Bar, Row, bars_chart, runs_chart
from reprise_server.api.dashboard.web import (
    PREFIX,
    Form,
    checked_form,
    duration,
    page,
    signed_in,
    to_sign_in,
)
from reprise_server.api.deps import DbSession
from reprise_server.shared.bulk.schemas import MAX_RUN_IDS
from reprise_server.shared.db import db_now
from reprise_server.shared.durations import DurationError, parse_datetime
from reprise_server.shared.overview import queries
from reprise_server.shared.overview.queries import CATEGORIES, FAILURES, WINDOWS, ErrorGroup

router = APIRouter()

FAILURE_WORDS = ",".join(sorted(s.value for s in FAILURES))
FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def _group_refusal(task: str, fingerprint: str) -> str | None:
    if not task or len(task) > 128:
        return "Name the group's task"
    if not FINGERPRINT.fullmatch(fingerprint):
        return "A group's fingerprint is 16 hex digits"
    return None


def _group_params(group: ErrorGroup, overview: queries.Overview) -> dict[str, str]:
    """The runs list's filter selecting exactly the group's runs in the window."""
    return {"task": group.task, "status": FAILURE_WORDS, "error": group.fingerprint,
            "from": overview.since.isoformat(), "to": overview.until.isoformat()}


@router.get("/overview")
def overview_page(request: Request, session: DbSession) -> Response:
    params = request.query_params
    signed = signed_in(request, session, params.get("env"))
    if signed is None:
        return to_sign_in(request)
    window = queries.window_of(params.get("window"))
    env = signed.auth.environment_slug
    data = queries.read_overview(session, signed.auth.environment_id, window, db_now(session))
    tasks = data.tasks
    charts = {
        "runs": runs_chart(data.buckets, window, f"Runs per {_bucket_words(window)} by status"),
        "wait": bars_chart(
            [Row(t.task, [Bar("p50", t.wait_p50, _wait(t.wait_p50)),
                          Bar("p95", t.wait_p95, _wait(t.wait_p95))]) for t in tasks],
            "wait", "Queue wait per task, p50 and p95", width=HALF_WIDTH),
        "duration": bars_chart(
            [Row(t.task, [Bar("p50", t.duration_p50, _ms(t.duration_p50)),
                          Bar("p95", t.duration_p95, _ms(t.duration_p95))]) for t in tasks],
            "duration", "Duration per task, p50 and p95", width=HALF_WIDTH),
        "failures": bars_chart(
            [Row(t.task, [Bar("failed", t.failure_rate, _rate(t.failed, t.finished))])
             for t in tasks],
            "failures", "Failure rate per task"),
    }
    totals = {c: sum(b.counts[c] for b in data.buckets) for c in CATEGORIES}

    def runs_url(group: ErrorGroup) -> str:
        return f"{PREFIX}/runs?{urlencode({**_group_params(group, data), 'env': env})}"

    def replay_url(group: ErrorGroup) -> str:
        return (f"{PREFIX}/overview/replay?"
                f"{urlencode({**_group_params(group, data), 'kind': group.name, 'env': env})}")

    return page("overview.html", signed=signed, overview=data, window=window,
                windows=WINDOWS.values(), charts=charts, totals=totals, now=signed.now,
                runs_url=runs_url, replay_url=replay_url, env_slug=env,
                categories=CATEGORIES)


def _bucket_words(window: queries.Window) -> str:
    minutes = int(window.bucket.total_seconds() // 60)
    return "minute" if minutes == 1 else f"{minutes} minutes" if minutes < 60 else \
        f"{minutes // 60} hours"


def _wait(value: float | None) -> str:
    """A wait in seconds, shown as a duration (milliseconds under a second)."""
    return duration(round(value * 1000)) if value is not None else "-"


def _ms(value: float | None) -> str:
    return duration(round(value)) if value is not None else "-"


def _rate(failed: int, finished: int) -> str:
    return f"{failed / finished:.0%} ({failed}/{finished})" if finished else "-"


@router.get("/overview/replay")
def replay_group(request: Request, session: DbSession) -> Response:
    """The bulk-action page for a replay of exactly the group's runs: by their ids when
    there are at most 500 of them, else by the filter that selects the group."""
    params = dict(request.query_params)
    signed = signed_in(request, session, params.get("env"))
    if signed is None:
        return to_sign_in(request)
    task, fingerprint = params.get("task", ""), params.get("error", "")
    refusal = _group_refusal(task, fingerprint)
    if refusal:
        return page("message.html", 400, signed=signed, title="Not a group", message=refusal)
    try:
        since, until = parse_datetime(params.get("from", "")), parse_datetime(
            params.get("to", ""))
    except DurationError:
        return page("message.html", 400, signed=signed, title="Not a group",
                    message="The group's window (from, to) must be date-times")
    group = queries.group_filter(task, fingerprint, since, until)
    ids = queries.group_run_ids(session, signed.auth.environment_id, group, MAX_RUN_IDS + 1)
    kind = params.get("kind") or "errors"
    name = f"Replay {task} {kind} ({fingerprint})"[:255]
    if len(ids) <= MAX_RUN_IDS:
        return bulk.new_page(request, session, signed, {"action": "replay", "name": name}, ids)
    query = {key: params[key] for key in ("task", "status", "error", "from", "to")
             if params.get(key)}
    query.update(action="replay", name=name, env=signed.auth.environment_slug)
    return RedirectResponse(f"{PREFIX}/bulk/new?{urlencode(query)}", status_code=303)


def _back(form: dict[str, str], env: str) -> Response:
    window = form.get("window") if form.get("window") in WINDOWS else queries.DEFAULT_WINDOW
    return RedirectResponse(f"{PREFIX}/overview?env={env}&window={window}", status_code=303)


@router.post("/overview/ignore")
def ignore(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    task, fingerprint = form.get("task", ""), form.get("error", "")
    refusal = _group_refusal(task, fingerprint)
    if refusal:
        return page("message.html", 400, signed=signed, title="Not ignored", message=refusal)
    queries.ignore_group(session, signed.auth.environment_id, task, fingerprint,
                         form.get("name", ""), form.get("message", ""))
    return _back(form, signed.auth.environment_slug)


@router.post("/overview/unignore")
def unignore(request: Request, session: DbSession, form: Form) -> Response:
    signed = checked_form(request, session, form)
    if isinstance(signed, Response):
        return signed
    queries.unignore_group(session, signed.auth.environment_id, form.get("task", ""),
                           form.get("error", ""))
    return _back(form, signed.auth.environment_slug)
