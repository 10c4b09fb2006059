"""``reprise.concurrency_limits``: the limits tasks declare (``@task(concurrency=...)``,
:func:`reprise.concurrency_limit`), read and changed at runtime, as ``concurrencyLimits.*``
of Trigger.dev's SDK.

A task's own limit is named ``task/<taskId>``; a named limit by its name::

    for limit in reprise.concurrency_limits.list():
        print(limit.name, limit.total.current, limit.running, limit.queued)
    reprise.concurrency_limits.override("openai", total=10)         # until reset
    reprise.concurrency_limits.override("openai", concurrency_key="user_1", per_key=0,
                                        ttl="1h")                     # one key, for a while
    reprise.concurrency_limits.reset("openai", concurrency_key="user_1")
    reprise.concurrency_limits.pause("task/send-email")
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, Protocol, TypeVar, overload
from urllib.parse import quote

from reprise._resource import Listing, M, Operation, Overloaded, Resource
from reprise._sansio import Feed, Op, call_json, offset_pages
from reprise.models import ConcurrencyLimitItem, ConcurrencyLimitKeyItem

Key = str | int
Limit_co = TypeVar("Limit_co", covariant=True)
KeyLimit_co = TypeVar("KeyLimit_co", covariant=True)


def _path(name: str, suffix: str = "") -> str:
    if not name:
        raise ValueError("a concurrency limit name is required")
    return f"/api/v1/concurrency-limits/{quote(name, safe='')}{suffix}"


def _ttl(ttl: str | int | timedelta) -> str | int:
    if isinstance(ttl, timedelta):
        return max(1, math.ceil(ttl.total_seconds()))
    return ttl


def _item(method: str, path: str, body: dict[str, Any] | None = None) -> Op[ConcurrencyLimitItem]:
    return ConcurrencyLimitItem.model_validate((yield from call_json(method, path, json_body=body)))


def _key_item(
    method: str, path: str, body: dict[str, Any] | None = None, params: dict[str, str] | None = None
) -> Op[ConcurrencyLimitKeyItem]:
    data = yield from call_json(method, path, json_body=body, params=params)
    return ConcurrencyLimitKeyItem.model_validate(data)


class _ByKey(Protocol[Limit_co, KeyLimit_co]):
    """``retrieve`` and ``reset``: the limit, or with ``concurrency_key`` that key's view."""

    @overload
    def __call__(self, name: str, concurrency_key: None = None) -> Limit_co: ...

    @overload
    def __call__(self, name: str, concurrency_key: Key) -> KeyLimit_co: ...


class _Override(Protocol[Limit_co, KeyLimit_co]):
    @overload
    def __call__(
        self, name: str, *, total: int | None = None, per_key: int | None = None,
        concurrency_key: None = None, ttl: None = None,
    ) -> Limit_co: ...

    @overload
    def __call__(
        self, name: str, *, per_key: int, concurrency_key: Key,
        ttl: str | int | timedelta | None = None,
    ) -> KeyLimit_co: ...


_Async = Coroutine[Any, Any, ConcurrencyLimitItem]
_AsyncKey = Coroutine[Any, Any, ConcurrencyLimitKeyItem]
ByKey = Overloaded[
    _ByKey[ConcurrencyLimitItem, ConcurrencyLimitKeyItem], _ByKey[_Async, _AsyncKey]
]
Override = Overloaded[
    _Override[ConcurrencyLimitItem, ConcurrencyLimitKeyItem], _Override[_Async, _AsyncKey]
]


class ConcurrencyLimits(Resource[M]):
    @Listing
    def list(self, *, per_page: int = 20) -> Feed[ConcurrencyLimitItem]:
        """Every limit of the key's environment, by name, a page at a time."""
        return offset_pages(
            "/api/v1/concurrency-limits", per_page, ConcurrencyLimitItem.model_validate
        )

    def _retrieve(
        self, name: str, concurrency_key: Key | None = None
    ) -> Op[ConcurrencyLimitItem | ConcurrencyLimitKeyItem]:
        """The limit; with ``concurrency_key``, the limit as that key sees it."""
        if concurrency_key is None:
            return (yield from _item("GET", _path(name)))
        return (yield from _key_item(
            "GET", _path(name), params={"concurrencyKey": str(concurrency_key)}
        ))

    retrieve: ByKey = Overloaded(_retrieve)

    def _override(
        self, name: str, *, total: int | None = None, per_key: int | None = None,
        concurrency_key: Key | None = None, ttl: str | int | timedelta | None = None,
    ) -> Op[ConcurrencyLimitItem | ConcurrencyLimitKeyItem]:
        """Override the limit's ``total`` and/or ``per_key`` (kept until :meth:`reset`); or,
        with ``concurrency_key``, cap that key at ``per_key`` for ``ttl`` (a duration such
        as ``"1h"``, seconds or a timedelta; default 7 days, at most 30). 0 blocks."""
        body: dict[str, Any] = {}
        if per_key is not None:
            body["perKey"] = per_key
        if total is not None:
            body["total"] = total
        if ttl is not None:
            body["ttl"] = _ttl(ttl)
        if concurrency_key is None:
            return (yield from _item("POST", _path(name, "/override"), body))
        body["concurrencyKey"] = concurrency_key
        return (yield from _key_item("POST", _path(name, "/override"), body))

    override: Override = Overloaded(_override)

    def _reset(
        self, name: str, concurrency_key: Key | None = None
    ) -> Op[ConcurrencyLimitItem | ConcurrencyLimitKeyItem]:
        """Back to the declared bounds; with ``concurrency_key``, clear that key's cap."""
        if concurrency_key is None:
            return (yield from _item("POST", _path(name, "/reset"), {}))
        return (yield from _key_item(
            "POST", _path(name, "/reset"), {"concurrencyKey": concurrency_key}
        ))

    reset: ByKey = Overloaded(_reset)

    @Operation
    def pause(self, name: str) -> Op[ConcurrencyLimitItem]:
        """Admit no more runs holding this limit (runs executing finish)."""
        return (yield from _item("POST", _path(name, "/pause"), {"action": "pause"}))

    @Operation
    def resume(self, name: str) -> Op[ConcurrencyLimitItem]:
        """Admit again, in order."""
        return (yield from _item("POST", _path(name, "/pause"), {"action": "resume"}))
