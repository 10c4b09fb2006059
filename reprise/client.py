"""The Python SDK's API client: ``configure``, ``tasks.trigger``, ``runs.*`` and the
other namespaces (``schedules``, ``queues``, ``concurrency_limits``, ``waitpoints``).

Without :func:`configure`, the first call reads ``REPRISE_API_URL`` / ``REPRISE_API_KEY``
(or ``TRIGGER_API_URL`` / ``TRIGGER_SECRET_KEY``). A :class:`Client` can be made directly
to talk to several servers or keys at once. A ``datetime`` without a timezone is UTC.
Usage: docs/tasks.md#the-python-sdk.
"""

from __future__ import annotations

import builtins
import hashlib
import math
import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Self, Unpack
from urllib.parse import quote

from reprise._resource import Async, Connection, Listing, M, Operation, Resource, Sync
from reprise._sansio import Feed, Op, call, call_json, cursor_pages, sleep
from reprise.bulk import RunsBulk
from reprise.concurrency_limits import ConcurrencyLimits
from reprise.errors import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RunPollTimeoutError,
    ServerError,
    UnsendableValueError,
)
from reprise.models import (
    FINAL_STATUSES,
    CanceledRun,
    Run,
    RunListItem,
    RunLogLine,
    RunTrace,
    TriggeredRun,
)
from reprise.queues import Queues
from reprise.schedules import Schedules
from reprise.transport import (
    AsyncTransport,
    AsyncTransportOptions,
    Transport,
    TransportOptions,
)
from reprise.waitpoints import Waitpoints

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "NotFoundError",
    "RunPollTimeoutError",
    "ServerError",
    "UnsendableValueError",
    "concurrency_limits",
    "configure",
    "queues",
    "runs",
    "schedules",
    "tasks",
    "waitpoints",
]

Delay = str | datetime | timedelta
Tags = str | list[str]
_HASHED_KEY = re.compile(r"^.{64}$", re.DOTALL)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def iso_utc(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z`` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def delay_value(delay: Delay) -> str:
    """A delay as the API takes it: a duration string, or an ISO date-time for a datetime."""
    if isinstance(delay, datetime):
        return iso_utc(delay)
    if isinstance(delay, timedelta):
        return f"{max(0, math.ceil(delay.total_seconds()))}s"
    if isinstance(delay, str):
        return delay
    raise TypeError("delay must be a duration string, a datetime or a timedelta")


def ttl_value(ttl: str | int | timedelta) -> str | int:
    if isinstance(ttl, timedelta):
        return max(0, math.ceil(ttl.total_seconds()))
    return ttl


def idempotency_options(key: str | list[str]) -> dict[str, Any]:
    """The idempotency fields of a trigger, hashed exactly as ``@trigger.dev/sdk`` does.

    Outside a task, a key of scope "run" is ``sha256("-".join(parts))`` in hex, and the user's
    key travels in ``idempotencyKeyOptions``; a plain 64-character string is taken as a key
    hashed already (as the official SDK does), so both SDKs deduplicate against each other.
    """
    if isinstance(key, str) and _HASHED_KEY.match(key):
        return {"idempotencyKey": key}
    parts = [key] if isinstance(key, str) else list(key)
    user_key = "-".join(parts)
    return {
        "idempotencyKey": hashlib.sha256(user_key.encode()).hexdigest(),
        "idempotencyKeyOptions": {"key": user_key, "scope": "run"},
    }


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _csv(value: str | Iterable[str] | None) -> str | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    return ",".join(items) or None


def _names(value: str | Iterable[str] | None) -> list[str] | None:
    """Limit names as the wire takes them: a list (one name alone is a list of one)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def _run_path(run_id: str, template: str) -> str:
    if not run_id:
        raise ValueError("a run id is required")
    return template.format(id=quote(run_id, safe=""))


class Tasks(Resource[M]):
    """``reprise.tasks``: trigger runs of tasks."""

    @Operation
    def trigger(
        self,
        task_id: str,
        payload: Any = None,
        *,
        idempotency_key: str | list[str] | None = None,
        idempotency_key_ttl: str | None = None,
        delay: Delay | None = None,
        ttl: str | int | timedelta | None = None,
        tags: Tags | None = None,
        metadata: dict[str, Any] | None = None,
        max_attempts: int | None = None,
        max_duration: int | None = None,
        queue: str | None = None,
        concurrency_key: str | int | None = None,
        priority: int | None = None,
        concurrency: str | Iterable[str] | None = None,
        test: bool | None = None,
    ) -> Op[TriggeredRun]:
        """Trigger a run of ``task_id`` with a JSON ``payload``; returns its id at once.

        A repeated ``idempotency_key`` returns the existing run with ``is_cached=True``.
        ``concurrency_key`` (a number is stored as its string) picks the pool of the
        limits' ``per_key`` bound; ``priority`` (seconds) orders the run as if queued that
        much earlier; ``concurrency`` names the named limits (at most two) that replace
        the task's for this run (its own ``task/<id>`` limit is kept; ``[]`` holds none
        of the named ones). See docs/concurrency.md.
        """
        options = _compact(
            {
                "idempotencyKeyTTL": idempotency_key_ttl,
                "delay": delay_value(delay) if delay is not None else None,
                "ttl": ttl_value(ttl) if ttl is not None else None,
                "tags": [tags] if isinstance(tags, str) else tags,
                "metadata": metadata,
                "maxAttempts": max_attempts,
                "maxDuration": max_duration,
                "queue": queue,
                "concurrencyKey": concurrency_key,
                "priority": priority,
                "concurrency": _names(concurrency),
                "test": test,
            }
        )
        if idempotency_key:
            options.update(idempotency_options(idempotency_key))
        body: dict[str, Any] = {"options": options}
        if payload is not None:
            body["payload"] = payload  # plain JSON: the server stores it as application/json
        path = f"/api/v1/tasks/{quote(task_id, safe='')}/trigger"
        response = yield from call("POST", path, json_body=body)
        return _handle(response.json(), response.headers.get("x-trigger-jwt"))


def _handle(data: dict[str, Any], token: str | None) -> TriggeredRun:
    return TriggeredRun(
        id=str(data["id"]),
        is_cached=bool(data.get("isCached", False)),
        public_access_token=token,
    )


class Runs(Resource[M]):
    """``reprise.runs``: read, list, poll, trace, cancel, replay and reschedule runs;
    ``runs.bulk`` does it to many runs at once."""

    def __init__(self, client: Connection[M]) -> None:
        Resource.__init__(self, client)  # (mypy rejects super() on a value-restricted M)
        self.bulk: RunsBulk[M] = RunsBulk(client)

    @Operation
    def retrieve(self, run_id: str) -> Op[Run]:
        data = yield from call_json("GET", _run_path(run_id, "/api/v3/runs/{id}"))
        return Run.model_validate(data)

    @Operation
    def poll(
        self, run_id: str, *, timeout: float | None = None, interval: float = 1.0
    ) -> Op[Run]:
        """Wait until the run is final (``FINAL_STATUSES``: COMPLETED, FAILED, CANCELED,
        CRASHED, SYSTEM_FAILURE, EXPIRED, TIMED_OUT) and return it, reading it every
        ``interval`` seconds. After ``timeout`` seconds (None: no limit) raises
        :class:`RunPollTimeoutError` carrying the run as last read."""
        if interval <= 0:
            raise ValueError("interval must be more than 0 seconds")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = yield from Runs.retrieve.op(self, run_id)
            if run.status in FINAL_STATUSES:
                return run
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RunPollTimeoutError(run_id, timeout or 0.0, run)
                yield from sleep(min(interval, left))
            else:
                yield from sleep(interval)

    @Listing
    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        task_identifier: str | Iterable[str] | None = None,
        queue: str | Iterable[str] | None = None,
        tag: str | Iterable[str] | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        period: str | None = None,
        version: str | Iterable[str] | None = None,
        is_test: bool | None = None,
        schedule: str | None = None,
        bulk_action: str | None = None,
        not_replayed: bool | None = None,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> Feed[RunListItem]:
        """Runs of the key's environment, newest first, fetching pages as it is iterated.

        ``queue`` names queues: ``task/<taskId>`` for a task's own, or a queue's name.
        ``bulk_action`` (``bulk_…``) keeps the runs that bulk action made or changed.
        ``not_replayed=True`` keeps runs no replay of which completed or is still under way.
        ``limit`` stops after that many runs (and fetches no further page).
        """
        params = _compact(
            {
                "filter[status]": _csv(status),
                "filter[taskIdentifier]": _csv(task_identifier),
                "filter[queue]": _csv(queue),
                "filter[tag]": _csv(tag),
                "filter[createdAt][from]": iso_utc(created_from) if created_from else None,
                "filter[createdAt][to]": iso_utc(created_to) if created_to else None,
                "filter[createdAt][period]": period,
                "filter[version]": _csv(version),
                "filter[isTest]": None if is_test is None else str(is_test).lower(),
                "filter[schedule]": schedule,
                "filter[bulkAction]": bulk_action,
                "filter[notReplayed]": "true" if not_replayed else None,
                "page[size]": str(page_size) if page_size else None,
            }
        )
        return cursor_pages("/api/v1/runs", params, limit, RunListItem.model_validate)

    @Operation
    def logs(
        self, run_id: str, *, after: int | None = None, level: str | None = None,
        search: str | None = None,
    ) -> Op[builtins.list[RunLogLine]]:
        """The run's captured log lines after the cursor ``after`` (a line's ``seq``), in
        order: ``level`` keeps that level and above (``WARNING``: warnings, errors,
        critical), ``search`` the lines whose message or traceback contains it. Poll with the last
        line's ``seq`` as ``after`` to follow a run; once the run is final, its lines are
        all there."""
        path = _run_path(run_id, "/api/v1/runs/{id}/logs")
        params = _compact({"level": level, "search": search})
        lines: builtins.list[RunLogLine] = []
        cursor = after
        while True:
            query = {**params, "after": str(cursor)} if cursor is not None else params
            page = yield from call_json("GET", path, params=query)
            lines.extend(RunLogLine.model_validate(item) for item in page.get("data", []))
            cursor = page.get("cursor", cursor)
            if not page.get("hasMore"):
                return lines

    @Operation
    def trace(self, run_id: str) -> Op[RunTrace]:
        """The run's trace: a tree of spans (the run; its delay and queue wait; its attempts
        with the backoffs between them; under an attempt its checkpoints, child runs and,
        as events, its log lines). ``trace.root_span.walk()`` lists every span."""
        path = _run_path(run_id, "/api/v1/runs/{id}/trace")
        data = yield from call_json("GET", path)
        return RunTrace.model_validate(data["trace"])

    @Operation
    def cancel(self, run_id: str, *, children: bool = False) -> Op[CanceledRun]:
        """Cancel a run (a no-op for a finished one); returns ``{id}``, as the official SDK.
        ``children=True`` cancels every unfinished run it triggered too, to any depth (a
        parent waiting in ``trigger_and_wait``, say)."""
        path = _run_path(run_id, "/api/v2/runs/{id}/cancel")
        if children:
            path += "?cancelChildren=true"
        return CanceledRun.model_validate((yield from call_json("POST", path)))

    @Operation
    def replay(
        self,
        run_id: str,
        *,
        payload: Any = UNSET,
        environment: str | None = None,
        tags: Tags | None = None,
        metadata: dict[str, Any] | None = None,
        delay: Delay | None = None,
        ttl: str | int | timedelta | None = None,
        max_attempts: int | None = None,
        priority: int | None = None,
        queue: str | None = None,
        concurrency_key: str | int | None = None,
        from_step: str | int | None = None,
        from_checkpoint: int | None = None,
    ) -> Op[TriggeredRun]:
        """Replay a run as a new run of the same task; returns the new run's handle (as
        :meth:`Tasks.trigger` does; ``is_cached`` is false).

        Without overrides the original payload and options are reused (its
        ``concurrency_key`` too: ``concurrency_key`` puts the new run in another pool).
        ``payload=None`` replays with a null payload; leave it out to keep the original.

        ``from_step`` (a position in the run's record, or a step's name; ``"name#2"`` for
        its second call) starts from that step: the original's recorded steps and waits
        before it are answered from its record, never done again. ``from_checkpoint`` makes
        that checkpoint's state the payload; the task sees ``ctx.run.resumed_from_checkpoint``
        and the original payload in ``ctx.run.original_payload``.
        """
        body = _compact(
            {
                "environment": environment,
                "tags": [tags] if isinstance(tags, str) else tags,
                "metadata": metadata,
                "delay": delay_value(delay) if delay is not None else None,
                "ttl": ttl_value(ttl) if ttl is not None else None,
                "maxAttempts": max_attempts,
                "priority": priority,
                "queue": queue,
                # The replay body takes a string (the official SDK's ReplayRunRequestBody).
                "concurrencyKey": str(concurrency_key) if concurrency_key is not None else None,
                "fromStep": str(from_step) if from_step is not None else None,
                "fromCheckpoint": from_checkpoint,
            }
        )
        if payload is not UNSET:
            body["payload"] = payload
        path = _run_path(run_id, "/api/v1/runs/{id}/replay")
        response = yield from call("POST", path, json_body=body or None)
        return _handle(response.json(), response.headers.get("x-trigger-jwt"))

    @Operation
    def reschedule(self, run_id: str, delay: Delay) -> Op[Run]:
        """Move a DELAYED run to a new time; returns the run with its new ``delayed_until``."""
        path = _run_path(run_id, "/api/v1/runs/{id}/reschedule")
        data = yield from call_json("POST", path, json_body={"delay": delay_value(delay)})
        return Run.model_validate(data)


class _Namespaces(Connection[M]):
    """The namespaces of a client, sync or async: the same resource classes for both."""

    def __init__(self) -> None:
        self.tasks: Tasks[M] = Tasks(self)
        self.runs: Runs[M] = Runs(self)
        self.schedules: Schedules[M] = Schedules(self)
        self.queues: Queues[M] = Queues(self)
        self.concurrency_limits: ConcurrencyLimits[M] = ConcurrencyLimits(self)
        self.waitpoints: Waitpoints[M] = Waitpoints(self)


class Client(_Namespaces[Sync]):
    """A connection to one Reprise API with one secret key: ``client.tasks``, ``client.runs``."""

    def __init__(
        self,
        base_url: str | None = None,
        access_token: str | None = None,
        **options: Unpack[TransportOptions],
    ) -> None:
        """``options``: ``timeout``, ``max_retries``, ``retry_backoff`` and an httpx
        ``transport`` (see :class:`~reprise.transport.Transport`)."""
        self.transport = Transport(base_url, access_token, **options)
        super().__init__()

    def _engine(self) -> Transport:
        return self.transport

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient(_Namespaces[Async]):
    """:class:`Client` for asyncio, over ``httpx.AsyncClient``: the same namespaces and
    methods, each awaited (``await client.runs.retrieve(run_id)``); listings are async
    iterators (``async for run in client.runs.list()``). Use it as ``async with``, or
    ``await client.close()``."""

    is_async = True

    def __init__(
        self,
        base_url: str | None = None,
        access_token: str | None = None,
        **options: Unpack[AsyncTransportOptions],
    ) -> None:
        """``options``: ``timeout``, ``max_retries``, ``retry_backoff`` and an httpx
        async ``transport`` (see :class:`~reprise.transport.AsyncTransport`)."""
        self.transport = AsyncTransport(base_url, access_token, **options)
        super().__init__()

    def _engine(self) -> AsyncTransport:
        return self.transport

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


class _DefaultClient(Connection[Sync]):
    """What the module-level namespaces are bound to: the client of :func:`configure`, or
    one made from the environment when first used."""

    def _engine(self) -> Transport:
        return default_client().transport


_lock = threading.Lock()
_default: Client | None = None


def configure(
    base_url: str | None = None,
    access_token: str | None = None,
    *,
    timeout: float = 30.0,
    max_retries: int = 3,
) -> Client:
    """Point ``reprise.tasks`` and ``reprise.runs`` at a server (env vars fill what is omitted)."""
    global _default
    client = Client(base_url, access_token, timeout=timeout, max_retries=max_retries)
    with _lock:
        _default = client
    return client


def default_client() -> Client:
    """The client ``reprise.tasks``/``reprise.runs`` use, made from the environment if needed."""
    global _default
    with _lock:
        if _default is None:
            _default = Client()
        return _default


_default_client = _DefaultClient()
tasks: Tasks[Sync] = Tasks(_default_client)
runs: Runs[Sync] = Runs(_default_client)
schedules: Schedules[Sync] = Schedules(_default_client)
queues: Queues[Sync] = Queues(_default_client)
concurrency_limits: ConcurrencyLimits[Sync] = ConcurrencyLimits(_default_client)
waitpoints: Waitpoints[Sync] = Waitpoints(_default_client)
