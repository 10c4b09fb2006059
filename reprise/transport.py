"""The HTTP layer of the SDK: authentication, JSON, errors and retries.

Retries follow the official SDK: connection errors, 408, 409, 429, 5xx and any response
carrying ``x-should-retry: true`` are retried with exponential backoff (``x-should-retry:
false`` forbids it). Every logical request carries one ``x-trigger-request-idempotency-key``
that stays the same across its retries, so a trigger whose response was lost is not
created twice: the server answers the retry with the run the first attempt created.

That logic is written once, as the generator :meth:`BaseTransport.request_op` (it yields
each attempt and each backoff, and receives the response or the error). :class:`Transport`
runs it over ``httpx.Client`` and ``time.sleep``, :class:`AsyncTransport` over
``httpx.AsyncClient`` and ``asyncio.sleep``; both run the resource methods, written once
too (:mod:`reprise._sansio`), the same way.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypedDict, TypeVar, cast

import httpx

from reprise._sansio import Feed, Item, Op, Request, Sleep, decode_json
from reprise.errors import ApiConnectionError, ApiError, UnsendableValueError, error_for

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_VERSION = "2025-07-16"
SDK_VERSION = "0.1.0"
REQUEST_KEY_HEADER = "x-trigger-request-idempotency-key"
MAX_BACKOFF_SECONDS = 30.0
RETRY_STATUSES = frozenset({408, 409, 429})
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
R = TypeVar("R")
T = TypeVar("T")


def env_base_url() -> str:
    return (
        os.environ.get("REPRISE_API_URL") or os.environ.get("TRIGGER_API_URL") or DEFAULT_BASE_URL
    )


def env_access_token() -> str | None:
    """The secret key from ``REPRISE_API_KEY`` or ``TRIGGER_SECRET_KEY``; only ``tr_…``
    values count. (``REPRISE_SECRET_KEY`` is the *server's* signing secret, never read here.)
    """
    for name in ("REPRISE_API_KEY", "TRIGGER_SECRET_KEY"):
        value = os.environ.get(name, "").strip()
        if value.startswith("tr_"):
            return value
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _unsendable(value: Any) -> str | None:
    """Where in a request body a value JSON cannot carry is, as a sentence, or None."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, where = stack.pop()
        name = where or "the request body"
        if isinstance(node, float) and not math.isfinite(node):
            word = "NaN" if math.isnan(node) else "Infinity" if node > 0 else "-Infinity"
            return f"{name} is {word}, which JSON cannot carry"
        if isinstance(node, str) and _LONE_SURROGATE.search(node):
            return f"{name} contains a lone surrogate, which is not valid Unicode"
        if isinstance(node, Mapping):
            items = [(child, f"{where}.{key}" if where else str(key)) for key, child in node.items()]
            items += [(key, name) for key in node if isinstance(key, str)]
            stack.extend(reversed(items))
        elif isinstance(node, list | tuple):
            stack.extend(reversed([(child, f"{where}[{i}]") for i, child in enumerate(node)]))
    return None


def encode_json(value: Any) -> bytes:
    """JSON for a request body; dates become ISO strings, anything else unknown is an error.
    A value JSON cannot carry is :class:`UnsendableValueError`, before anything is sent."""
    problem = _unsendable(value)
    if problem is not None:
        raise UnsendableValueError(problem)
    return json.dumps(
        value, default=_json_default, separators=(",", ":"), allow_nan=False
    ).encode()


def _error_message(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:500] or response.reason_phrase or "request failed"), text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], body
    return (response.reason_phrase or "request failed"), body


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an unsuccessful response, with the API's ``{"error"}`` message."""
    message, body = _error_message(response)
    return error_for(response.status_code, message, response.headers, body)


class _Options(TypedDict, total=False):
    timeout: float
    max_retries: int
    retry_backoff: float


class TransportOptions(_Options, total=False):
    """The keyword options of :class:`Transport` (a :class:`~reprise.client.Client`
    passes them through)."""

    transport: httpx.BaseTransport | None


class AsyncTransportOptions(_Options, total=False):
    """The keyword options of :class:`AsyncTransport` (and
    :class:`~reprise.client.AsyncClient`): the same, with an async httpx ``transport``."""

    transport: httpx.AsyncBaseTransport | None


@dataclass(frozen=True, slots=True)
class Send:
    """One attempt of a request on the wire."""

    method: str
    path: str
    content: bytes | None
    params: Mapping[str, str] | None
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Done(Generic[R]):
    value: R


Wire = Generator[Send | Sleep | Item[Any], Any, R]
"""An operation lowered to what a transport does: attempts, sleeps (and a listing's items)."""


class _Drive(Generic[R]):
    """Drives a wire: what to send (or throw) into it next. The sync and async transports
    each do the I/O of the step it gives and report the outcome here."""

    def __init__(self, wire: Wire[R]) -> None:
        self._wire = wire
        self.reply: Any = None
        self.error: Exception | None = None

    def next(self) -> Send | Sleep | Item[Any] | _Done[R]:
        error, reply = self.error, self.reply
        self.error = self.reply = None
        try:
            return self._wire.throw(error) if error is not None else self._wire.send(reply)
        except StopIteration as stop:
            return _Done(stop.value)


def backoff(attempt: int, retry_backoff: float) -> float:
    """The wait before retry ``attempt + 1``: exponential, capped, with jitter."""
    base = min(retry_backoff * float(2**attempt), MAX_BACKOFF_SECONDS)
    return base * (0.75 + random.random() * 0.5)  # jitter spreads out retrying clients


def retry_delay(
    response: httpx.Response, attempt: int, max_retries: int, retry_backoff: float
) -> float | None:
    """Seconds to wait before retrying ``response``, or None when it must not be retried."""
    if attempt >= max_retries:
        return None
    should_retry = response.headers.get("x-should-retry")
    if should_retry == "false":
        return None
    status = response.status_code
    if should_retry != "true" and status not in RETRY_STATUSES and status < 500:
        return None
    hinted = _server_hint(response)
    if hinted is not None:
        return min(hinted, MAX_BACKOFF_SECONDS)
    return backoff(attempt, retry_backoff)


class BaseTransport:
    """What both transports share: the configuration, the headers, and the one
    implementation of a request's attempts, retries and errors (:meth:`request_op`)."""

    def __init__(
        self,
        base_url: str | None,
        access_token: str | None,
        *,
        max_retries: int,
        retry_backoff: float,
    ) -> None:
        self.base_url = (base_url or env_base_url()).rstrip("/")
        self.access_token = access_token if access_token is not None else env_access_token()
        self.max_retries = max(0, max_retries)
        self.retry_backoff = retry_backoff
        self.headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "x-trigger-api-version": API_VERSION,
            "x-trigger-source": "reprise-python",
            "user-agent": f"reprise-python/{SDK_VERSION}",
        }
        if self.access_token:
            self.headers["authorization"] = f"Bearer {self.access_token}"

    def request_op(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        request_key: str | None = None,
    ) -> Wire[httpx.Response]:
        """One logical request, retrying transient failures with the same request key.

        Yields each attempt (:class:`Send`; the transport sends back the response or throws
        in what sending raised) and each backoff (:class:`Sleep`). Returns the successful
        response; raises :class:`~reprise.errors.ApiError` (a subclass matching the status)
        or :class:`~reprise.errors.ApiConnectionError`.
        """
        headers = {REQUEST_KEY_HEADER: request_key or str(uuid.uuid4())}
        content = encode_json(json_body) if json_body is not None else None
        attempt = 0
        while True:
            try:
                response = yield Send(method, path, content, params, headers)
            except _TRANSIENT as exc:
                if attempt >= self.max_retries:
                    raise ApiConnectionError(
                        f"could not reach {self.base_url}: {type(exc).__name__}: {exc}"
                    ) from exc
                delay = backoff(attempt, self.retry_backoff)
            else:
                if response.is_success:
                    return cast(httpx.Response, response)
                retry_in = retry_delay(response, attempt, self.max_retries, self.retry_backoff)
                if retry_in is None:
                    raise error_from(response)
                delay = retry_in
            yield Sleep(delay)
            attempt += 1

    def lower(self, op: Generator[Request | Sleep | Item[Any], Any, R]) -> Wire[R]:
        """``op`` with each of its :class:`Request` steps done by :meth:`request_op`: the
        response goes back into ``op``, or the error is raised in it."""
        reply: Any = None
        error: Exception | None = None
        while True:
            try:
                step = op.throw(error) if error is not None else op.send(reply)
            except StopIteration as stop:
                return cast(R, stop.value)
            reply = error = None
            if isinstance(step, Request):
                try:
                    reply = yield from self.request_op(
                        step.method, step.path, json_body=step.json_body,
                        params=step.params, request_key=step.request_key,
                    )
                except Exception as exc:
                    error = exc
            else:
                reply = yield step


class Transport(BaseTransport):
    """One configured connection to a Reprise API (thread-safe, keeps connections alive)."""

    def __init__(
        self,
        base_url: str | None = None,
        access_token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, access_token, max_retries=max_retries, retry_backoff=retry_backoff
        )
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def _until_item(self, drive: _Drive[R]) -> Item[Any] | _Done[R]:
        while True:
            step = drive.next()
            if isinstance(step, Item | _Done):
                return step
            try:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                else:
                    drive.reply = self._http.request(
                        step.method, step.path, content=step.content, params=step.params,
                        headers=step.headers,
                    )
            except Exception as exc:
                drive.error = exc

    def run(self, op: Op[R]) -> R:
        """Do an operation's requests and sleeps; its result."""
        return self._complete(self.lower(op))

    def _complete(self, wire: Wire[R]) -> R:
        outcome = self._until_item(_Drive(wire))
        if isinstance(outcome, Item):
            raise TypeError("an operation yielded an item")
        return outcome.value

    def iterate(self, feed: Feed[T]) -> Iterator[T]:
        """A listing's items, doing its requests as it is iterated."""
        drive = _Drive(self.lower(feed))
        while True:
            outcome = self._until_item(drive)
            if isinstance(outcome, _Done):
                return
            yield outcome.value

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        request_key: str | None = None,
    ) -> httpx.Response:
        """Send one logical request, retrying transient failures with the same request key.

        Returns the successful response; raises :class:`~reprise.errors.ApiError` (a subclass
        matching the status) or :class:`~reprise.errors.ApiConnectionError`.
        """
        wire = self.request_op(
            method, path, json_body=json_body, params=params, request_key=request_key
        )
        return self._complete(wire)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        return decode_json(self.request(method, path, json_body=json_body, params=params))


class AsyncTransport(BaseTransport):
    """:class:`Transport` over ``httpx.AsyncClient``: the same requests, retries and errors
    (:meth:`BaseTransport.request_op`), awaited."""

    def __init__(
        self,
        base_url: str | None = None,
        access_token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url, access_token, max_retries=max_retries, retry_backoff=retry_backoff
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _until_item(self, drive: _Drive[R]) -> Item[Any] | _Done[R]:
        while True:
            step = drive.next()
            if isinstance(step, Item | _Done):
                return step
            try:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                else:
                    drive.reply = await self._http.request(
                        step.method, step.path, content=step.content, params=step.params,
                        headers=step.headers,
                    )
            except Exception as exc:
                drive.error = exc

    async def run(self, op: Op[R]) -> R:
        """Do an operation's requests and sleeps; its result."""
        return await self._complete(self.lower(op))

    async def _complete(self, wire: Wire[R]) -> R:
        outcome = await self._until_item(_Drive(wire))
        if isinstance(outcome, Item):
            raise TypeError("an operation yielded an item")
        return outcome.value

    async def iterate(self, feed: Feed[T]) -> AsyncIterator[T]:
        """A listing's items, doing its requests as it is iterated."""
        drive = _Drive(self.lower(feed))
        while True:
            outcome = await self._until_item(drive)
            if isinstance(outcome, _Done):
                return
            yield outcome.value

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        request_key: str | None = None,
    ) -> httpx.Response:
        """:meth:`Transport.request`, awaited."""
        wire = self.request_op(
            method, path, json_body=json_body, params=params, request_key=request_key
        )
        return await self._complete(wire)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        return decode_json(await self.request(method, path, json_body=json_body, params=params))


def _server_hint(response: httpx.Response) -> float | None:
    """The wait a 429/503 asks for (``retry-after`` or ``x-ratelimit-reset`` in epoch ms)."""
    reset = response.headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) / 1000 - time.time())
    after = response.headers.get("retry-after")
    if not after:
        return None
    try:
        return max(0.0, float(after))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(after).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
