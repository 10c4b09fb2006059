"""Realtime: ``runs.subscribeToRun``, ``runs.subscribeToRunsWithTag``, ``subscribeToBatch``.

The official SDK reads these with ElectricSQL's shape-stream client, so they speak its
HTTP protocol: ``offset=-1`` answers the whole shape (``insert`` messages, then
``up-to-date``); ``offset=<o>&live=true`` long-polls up to :data:`LIVE_POLL_SECONDS` for
runs changed after ``<o>`` (``update`` messages with the whole row). Rows are Trigger.dev's
``TaskRun`` columns. Waiting costs no query: :mod:`api.realtime_hub` wakes the long-poll.
See docs/api.md#realtime and docs/architecture.md#realtime.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from reprise_server.api.deps import RealtimeReader, api_applier
from reprise_server.api.realtime_hub import run_change_hub
from reprise_server.shared.batches.service import visible_batch
from reprise_server.shared.db import db_now, transaction
from reprise_server.shared.durations import DurationError, parse_duration
from reprise_server.shared.errors import BadRequest, Forbidden
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.reads import visible_run
from reprise_server.shared.realtime.shapes import (
    Shape,
    batch_shape,
    read_shape,
    run_row,
    run_shape,
    shape_key,
    skipped_columns,
    tags_shape,
)
from reprise_server.shared.runs.models import Run

router = APIRouter(tags=["realtime"])

LIVE_POLL_SECONDS = 20.0
DEFAULT_CREATED_AT = "24h"


@dataclass(frozen=True)
class ShapeRequest:
    """The Electric protocol's query parameters, checked."""

    offset: str
    live: bool
    handle: str | None
    skip: frozenset[str]


async def _shape_request(
    offset: Annotated[str, Query()] = "-1",
    live: Annotated[str | None, Query()] = None,
    handle: Annotated[str | None, Query()] = None,
    log: Annotated[str, Query()] = "full",
    cursor: Annotated[str | None, Query()] = None,  # the live cache buster: any value
    expired_handle: Annotated[str | None, Query()] = None,  # handles never expire here
    skip_columns: Annotated[str | None, Query(alias="skipColumns")] = None,
) -> ShapeRequest:
    if log != "full":
        raise BadRequest("log must be 'full' (changes_only is not supported)")
    if live not in (None, "true", "false"):
        raise BadRequest("live must be true or false")
    return ShapeRequest(
        offset=offset,
        live=live == "true" and offset != "-1",
        handle=handle,
        skip=skipped_columns((skip_columns or "").split(",")),
    )


ShapeQuery = Annotated[ShapeRequest, Depends(_shape_request)]


def _messages(runs: list[Run], operation: str, auth: AuthContext,
              skip: frozenset[str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {
            "key": shape_key(run),
            "value": run_row(run, public=auth.is_public, skip=skip),
            "headers": {"operation": operation, "relation": ["public", "TaskRun"]},
        }
        for run in runs
    ]
    messages.append({"headers": {"control": "up-to-date"}})
    return messages


def _skip(auth: AuthContext, query: ShapeRequest) -> frozenset[str]:
    claimed = (auth.access.realtime or {}).get("skipColumns") if auth.access else None
    if isinstance(claimed, list):
        return query.skip | skipped_columns(str(c) for c in claimed)
    return query.skip


def _read(shape: Shape, since: str | None) -> tuple[list[Run], str]:
    with transaction() as session:
        read = read_shape(session, shape, since)
    return read.runs, read.offset


async def _serve(request: Request, auth: AuthContext, shape: Shape, handle: str,
                 query: ShapeRequest) -> Response:
    skip = _skip(auth, query)
    headers = {
        "electric-handle": handle,
        "electric-schema": "{}",
        "electric-cursor": str(int(time.time())),
        "cache-control": "no-store",
    }
    if not query.live:
        since = None if query.offset == "-1" else query.offset
        runs, offset = await run_in_threadpool(_read, shape, since)
        headers.update({"electric-offset": offset, "electric-up-to-date": ""})
        operation = "insert" if since is None else "update"
        return JSONResponse(_messages(runs, operation, auth, skip), headers=headers)

    hub = run_change_hub()
    await hub.start()
    deadline = time.monotonic() + LIVE_POLL_SECONDS
    since = query.offset
    while True:
        # Watch before reading: a change committed between the read and the wait still
        # wakes us.
        with hub.watch(shape.keys) as changed:
            runs, offset = await run_in_threadpool(_read, shape, since)
            remaining = deadline - time.monotonic()
            if runs or remaining <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass
        if await request.is_disconnected():
            return Response(status_code=204)
    headers["electric-offset"] = offset
    return JSONResponse(_messages(runs, "update", auth, skip), headers=headers)


def _authorize_run(auth: AuthContext, run_id: str) -> None:
    # Through the read path: a replay's new run exists once its command is applied, so a
    # subscription right after runs.replay() finds it (read-your-writes).
    with transaction() as session:
        visible_run(session, auth, run_id, api_applier())


def _authorize_batch(auth: AuthContext, batch_id: str) -> None:
    with transaction() as session:
        visible_batch(session, auth, batch_id)


@router.get("/realtime/v1/runs/{run_id}", summary="Subscribe to a run (Electric shape stream)")
async def subscribe_to_run(run_id: str, request: Request, auth: RealtimeReader,
                           query: ShapeQuery) -> Response:
    await run_in_threadpool(_authorize_run, auth, run_id)
    return await _serve(request, auth, run_shape(auth.environment_id, run_id), "run", query)


@router.get("/realtime/v1/batches/{batch_id}",
            summary="Subscribe to a batch's runs (Electric shape stream)")
async def subscribe_to_batch(batch_id: str, request: Request, auth: RealtimeReader,
                             query: ShapeQuery) -> Response:
    await run_in_threadpool(_authorize_batch, auth, batch_id)
    return await _serve(request, auth, batch_shape(auth.environment_id, batch_id), "batch",
                        query)


def _tags(value: str | None) -> list[str]:
    tags = [t.strip() for t in (value or "").split(",")]
    if any(not t for t in tags) and value:
        raise BadRequest("tags must be a comma-separated list of non-empty tags")
    return [t for t in tags if t]


def _created_after_ms(auth: AuthContext, created_at: str | None) -> int:
    try:
        window = timedelta(seconds=parse_duration(created_at or DEFAULT_CREATED_AT))
    except DurationError:
        raise BadRequest(f"createdAt must be a duration such as 1h or 7d: {created_at}") from None
    with transaction() as session:
        since = db_now(session) - window
    return int(since.timestamp() * 1000)


@router.get("/realtime/v1/runs",
            summary="Subscribe to the runs with every one of some tags (Electric shape stream)")
async def subscribe_to_runs_with_tag(
    request: Request, auth: RealtimeReader, query: ShapeQuery,
    tags: Annotated[str | None, Query()] = None,
    created_at: Annotated[str | None, Query(alias="createdAt")] = None,
) -> Response:
    """``createdAt`` (a duration, default 24h) is measured once, at the first request: the
    shape's handle carries that cutoff, so the window does not slide while subscribed."""
    wanted = _tags(tags)
    if auth.access is not None and not (
        auth.access.allows("read", "runs") or auth.access.allows("read", "tags", wanted)
    ):
        raise Forbidden("this public access token may not read runs with these tags")
    if query.offset == "-1":
        cutoff_ms = await run_in_threadpool(_created_after_ms, auth, created_at)
    else:
        if not query.handle or not query.handle.startswith("tags-"):
            raise BadRequest("handle is required with an offset: the one this shape answered")
        try:
            cutoff_ms = int(query.handle.removeprefix("tags-"))
        except ValueError:
            raise BadRequest(f"handle {query.handle!r} is not one this server gave") from None
    cutoff = datetime.fromtimestamp(cutoff_ms / 1000, tz=UTC)
    shape = tags_shape(auth.environment_id, wanted, cutoff)
    return await _serve(request, auth, shape, f"tags-{cutoff_ms}", query)

