"""The SDK's requests as data: every API call is written once, as a generator.

A resource method is a generator that *yields* what it needs done and receives the answer:

* :class:`Request` — one logical API request; the transport sends it (with its retries) and
  sends back the successful ``httpx.Response``, or raises the mapped error at the ``yield``;
* :class:`Sleep` — wait that many seconds (``runs.poll``) and resume;
* :class:`Item` — only in a :data:`Feed` (a listing): one value for the caller's iteration.

Its return value is the method's result. The sync :class:`~reprise.transport.Transport` runs
these over ``httpx.Client`` and ``time.sleep``, the :class:`~reprise.transport.AsyncTransport`
over ``httpx.AsyncClient`` and ``asyncio.sleep``; nothing here does any I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from reprise.errors import ApiError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    """One logical request: sent, and retried, by the transport with one request key."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    json_body: Any = None
    request_key: str | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before resuming."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Item(Generic[T]):
    """One value of a listing, handed to the caller's ``for`` / ``async for``."""

    value: T


Op = Generator[Request | Sleep, Any, T]
"""An operation: yields requests and sleeps, returns its result."""

Feed = Generator[Request | Sleep | Item[T], Any, None]
"""A listing: yields requests and sleeps, and the items as they come."""


def call(
    method: str,
    path: str,
    *,
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
) -> Op[httpx.Response]:
    """Send a request; the successful response (headers and all)."""
    response = yield Request(method, path, params, json_body)
    if not isinstance(response, httpx.Response):
        raise TypeError(f"a request was answered with {type(response).__name__}")
    return response


def call_json(
    method: str,
    path: str,
    *,
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
) -> Op[Any]:
    """Send a request; its JSON body."""
    response = yield from call(method, path, json_body=json_body, params=params)
    return decode_json(response)


def sleep(seconds: float) -> Op[None]:
    yield Sleep(seconds)


def decode_json(response: httpx.Response) -> Any:
    """The body of a successful response; :class:`ApiError` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            response.status_code, "the API answered with a body that is not JSON"
        ) from None


def cursor_pages(
    path: str, params: dict[str, str], limit: int | None, parse: Callable[[Any], T]
) -> Feed[T]:
    """Every item of a cursor-paginated list (``page[after]`` = ``pagination.next``), newest
    first; stops after ``limit`` items without fetching a further page."""
    seen = 0
    while True:
        page = yield from call_json("GET", path, params=params)
        for item in page.get("data", []):
            if limit is not None and seen >= limit:
                return
            seen += 1
            yield Item(parse(item))
        cursor = (page.get("pagination") or {}).get("next")
        if not cursor or (limit is not None and seen >= limit):
            return
        params = {**params, "page[after]": cursor}


def offset_pages(path: str, per_page: int, parse: Callable[[Any], T]) -> Feed[T]:
    """Every item of an offset-paginated list (``page``/``perPage``), page by page."""
    page = 1
    while True:
        data = yield from call_json(
            "GET", path, params={"page": str(page), "perPage": str(per_page)}
        )
        for item in data.get("data", []):
            yield Item(parse(item))
        pagination = data.get("pagination") or {}
        if page >= int(pagination.get("totalPages", 1)):
            return
        page += 1
