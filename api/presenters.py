"""What the API answers with: the domain's views in the wire shapes, and signed packet
links for payloads and outputs too large to inline."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import Request

from reprise_server.shared.payloads import STORE
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.projects.tokens import sign_packet
from reprise_server.shared.reads import JobRunView, RunView
from reprise_server.shared.runs.listing import Page
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.strait_wire import job_run_to_wire
from reprise_server.shared.runs.wire import common_run_to_wire, run_to_wire
from reprise_server.shared.schedules.wire import run_schedule_to_wire
from reprise_server.shared.settings import get_settings

PACKET_TTL_SECONDS = 300


def _too_large(value: Any) -> bool:
    if value is None:
        return False
    return len(json.dumps(value, separators=(",", ":"))) > get_settings().large_payload_bytes


def packet_url(request: Request, run: Run, kind: str) -> str:
    """A link to the run's payload or output, HMAC-signed, valid for five minutes."""
    expires = int(time.time()) + PACKET_TTL_SECONDS
    base = str(request.base_url).rstrip("/")
    signature = sign_packet(run.id, kind, expires)
    return f"{base}/api/v1/run-packets/{run.id}/{kind}?expires={expires}&signature={signature}"


def render_run(
    request: Request, view: RunView, api_version: str | None, *, public: bool
) -> dict[str, Any]:
    """The full run object (retrieve, reschedule); a public token sees no payload/output."""
    run = view.run
    return run_to_wire(
        run,
        view.attempts,
        view.related,
        api_version,
        public=public,
        payload_url=(
            packet_url(request, run, "payload")
            if run.payload_type == STORE or _too_large(run.payload) else None
        ),
        output_url=packet_url(request, run, "output") if _too_large(run.output) else None,
        schedule=run_schedule_to_wire(view.schedule) if view.schedule else None,
    )


def render_page(page: Page, auth: AuthContext, api_version: str | None) -> dict[str, Any]:
    """``{data, pagination: {next?, previous?}}`` of ``GET /api/v1/runs``."""
    env = {"id": auth.environment_id, "name": auth.environment_slug}
    data = [{**common_run_to_wire(run, api_version), "env": env} for run in page.runs]
    pagination: dict[str, str] = {}
    if page.next_cursor:
        pagination["next"] = page.next_cursor
    if page.previous_cursor:
        pagination["previous"] = page.previous_cursor
    return {"data": data, "pagination": pagination}


def render_job_run(view: JobRunView) -> dict[str, Any]:
    """Strait's ``JobRun``."""
    return job_run_to_wire(view.run, view.job_version, view.payload)
