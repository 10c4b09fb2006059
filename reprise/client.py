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
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Self, Unpack
from urllib.parse import quote

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
from reprise.transport import Transport, TransportOptions
from reprise.waitpoints import Waitpoints

__all__ = [
    "ApiConnectionError",
    "ApiError",
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


def _run_path(run_id: str, template: str) -> str:
    if not run_id:
        raise ValueError("a run id is required")
    return template.format(id=quote(run_id, safe=""))


class Tasks:
    """``reprise.tasks``: trigger runs of tasks."""

    def __init__(self, client: Callable[[], Client]) -> None:
        self._client = client

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
        concurrency_key: str | None = None,
        priority: int | None = None,
        test: bool | None = None,
    ) -> TriggeredRun:
        """Trigger a run of ``task_id`` with a JSON ``payload``; returns its id at once.

        A repeated ``idempotency_key`` returns the existing run with ``is_cached=True``.
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
                "test": test,
            }
        )
        if idempotency_key:
            options.update(idempotency_options(idempotency_key))
        body: dict[str, Any] = {"options": options}
        if payload is not None:
            body["payload"] = payload  # plain JSON: the server stores it as application/json
        path = f"/api/v1/tasks/{quote(task_id, safe='')}/trigger"
        response = self._client().transport.request("POST", path, json_body=body)
        return _handle(response.json(), response.headers.get("x-trigger-jwt"))


def _handle(data: dict[str, Any], token: str | None) -> TriggeredRun:
    return TriggeredRun(
        id=str(data["id"]),
        is_cached=bool(data.get("isCached", False)),
        public_access_token=token,
    )


class Runs:
    """``reprise.runs``: read, list, poll, trace, cancel, replay and reschedule runs;
    ``runs.bulk`` does it to many runs at once."""

    def __init__(self, client: Callable[[], Client]) -> None:
        self._client = client
        self.bulk = RunsBulk(client)

    def retrieve(self, run_id: str) -> Run:
        data = self._client().transport.request_json("GET", _run_path(run_id, "/api/v3/runs/{id}"))
        return Run.model_validate(data)

    def poll(self, run_id: str, *, timeout: float | None = None, interval: float = 1.0) -> Run:
        """Wait until the run is final (``FINAL_STATUSES``: COMPLETED, FAILED, CANCELED,
        CRASHED, SYSTEM_FAILURE, EXPIRED, TIMED_OUT) and return it, reading it every
        ``interval`` seconds. After ``timeout`` seconds (None: no limit) raises
        :class:`RunPollTimeoutError` carrying the run as last read."""
        if interval <= 0:
            raise ValueError("interval must be more than 0 seconds")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.retrieve(run_id)
            if run.status in FINAL_STATUSES:
                return run
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RunPollTimeoutError(run_id, timeout or 0.0, run)
                time.sleep(min(interval, left))
            else:
                time.sleep(interval)

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
    ) -> Iterator[RunListItem]:
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
        return self._iterate(params, limit)

    def _iterate(self, params: dict[str, str], limit: int | None) -> Iterator[RunListItem]:
        seen = 0
        while True:
            page = self._client().transport.request_json("GET", "/api/v1/runs", params=params)
            for item in page.get("data", []):
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield RunListItem.model_validate(item)
            cursor = (page.get("pagination") or {}).get("next")
            if not cursor or (limit is not None and seen >= limit):
                return
            params = {**params, "page[after]": cursor}

    def logs(
        self, run_id: str, *, after: int | None = None, level: str | None = None,
        search: str | None = None,
    ) -> builtins.list[RunLogLine]:
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
            page = self._client().transport.request_json("GET", path, params=query)
            lines.extend(RunLogLine.model_validate(item) for item in page.get("data", []))
            cursor = page.get("cursor", cursor)
            if not page.get("hasMore"):
                return lines

    def trace(self, run_id: str) -> RunTrace:
        """The run's trace: a tree of spans (the run; its delay and queue wait; its attempts
        with the backoffs between them; under an attempt its checkpoints, child runs and,
        as events, its log lines). ``trace.root_span.walk()`` lists every span."""
        path = _run_path(run_id, "/api/v1/runs/{id}/trace")
        data = self._client().transport.request_json("GET", path)
        return RunTrace.model_validate(data["trace"])

    def cancel(self, run_id: str, *, children: bool = False) -> CanceledRun:
        """Cancel a run (a no-op for a finished one); returns ``{id}``, as the official SDK.
        ``children=True`` cancels every unfinished run it triggered too, to any depth (a
        parent waiting in ``trigger_and_wait``, say)."""
        path = _run_path(run_id, "/api/v2/runs/{id}/cancel")
        if children:
            path += "?cancelChildren=true"
        return CanceledRun.model_validate(self._client().transport.request_json("POST", path))

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
        from_step: str | int | None = None,
        from_checkpoint: int | None = None,
    ) -> TriggeredRun:
        """Replay a run as a new run of the same task; returns the new run's handle (as
        :meth:`Tasks.trigger` does; ``is_cached`` is false).

        Without overrides the original payload and options are reused. ``payload=None``
        replays with a null payload; leave it out to keep the original.

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
                "fromStep": str(from_step) if from_step is not None else None,
                "fromCheckpoint": from_checkpoint,
            }
        )
        if payload is not UNSET:
            body["payload"] = payload
        path = _run_path(run_id, "/api/v1/runs/{id}/replay")
        response = self._client().transport.request("POST", path, json_body=body or None)
        return _handle(response.json(), response.headers.get("x-trigger-jwt"))

    def reschedule(self, run_id: str, delay: Delay) -> Run:
        """Move a DELAYED run to a new time; returns the run with its new ``delayed_until``."""
        path = _run_path(run_id, "/api/v1/runs/{id}/reschedule")
        data = self._client().transport.request_json(
            "POST", path, json_body={"delay": delay_value(delay)}
        )
        return Run.model_validate(data)


class Client:
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
        self.tasks = Tasks(lambda: self)
        self.runs = Runs(lambda: self)
        self.schedules = Schedules(lambda: self)
        self.queues = Queues(lambda: self)
        self.concurrency_limits = ConcurrencyLimits(lambda: self)
        self.waitpoints = Waitpoints(lambda: self)

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


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


tasks = Tasks(default_client)
runs = Runs(default_client)
schedules = Schedules(default_client)
queues = Queues(default_client)
concurrency_limits = ConcurrencyLimits(default_client)
waitpoints = Waitpoints(default_client)
