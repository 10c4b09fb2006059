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
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import quote

from reprise.models import ConcurrencyLimitItem, ConcurrencyLimitKeyItem
from reprise.queues import offset_pages

if TYPE_CHECKING:
    from reprise.client import Client

Key = str | int


def _path(name: str, suffix: str = "") -> str:
    if not name:
        raise ValueError("a concurrency limit name is required")
    return f"/api/v1/concurrency-limits/{quote(name, safe='')}{suffix}"


def _ttl(ttl: str | int | timedelta) -> str | int:
    if isinstance(ttl, timedelta):
        return max(1, math.ceil(ttl.total_seconds()))
    return ttl


class ConcurrencyLimits:
    def __init__(self, client: Callable[[], Client]) -> None:
        self._client = client

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> Any:
        return self._client().transport.request_json(method, path, json_body=body,
                                                     params=params)

    def list(self, *, per_page: int = 20) -> Iterator[ConcurrencyLimitItem]:
        """Every limit of the key's environment, by name, a page at a time."""
        for item in offset_pages(self._client, "/api/v1/concurrency-limits", per_page):
            yield ConcurrencyLimitItem.model_validate(item)

    @overload
    def retrieve(self, name: str, concurrency_key: None = None) -> ConcurrencyLimitItem: ...

    @overload
    def retrieve(self, name: str, concurrency_key: Key) -> ConcurrencyLimitKeyItem: ...

    def retrieve(
        self, name: str, concurrency_key: Key | None = None
    ) -> ConcurrencyLimitItem | ConcurrencyLimitKeyItem:
        """The limit; with ``concurrency_key``, the limit as that key sees it."""
        if concurrency_key is None:
            return ConcurrencyLimitItem.model_validate(self._call("GET", _path(name)))
        data = self._call("GET", _path(name), params={"concurrencyKey": str(concurrency_key)})
        return ConcurrencyLimitKeyItem.model_validate(data)

    @overload
    def override(
        self, name: str, *, total: int | None = None, per_key: int | None = None,
        concurrency_key: None = None, ttl: None = None,
    ) -> ConcurrencyLimitItem: ...

    @overload
    def override(
        self, name: str, *, per_key: int, concurrency_key: Key,
        ttl: str | int | timedelta | None = None,
    ) -> ConcurrencyLimitKeyItem: ...

    def override(
        self, name: str, *, total: int | None = None, per_key: int | None = None,
        concurrency_key: Key | None = None, ttl: str | int | timedelta | None = None,
    ) -> ConcurrencyLimitItem | ConcurrencyLimitKeyItem:
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
            return ConcurrencyLimitItem.model_validate(
                self._call("POST", _path(name, "/override"), body)
            )
        body["concurrencyKey"] = concurrency_key
        return ConcurrencyLimitKeyItem.model_validate(
            self._call("POST", _path(name, "/override"), body)
        )

    @overload
    def reset(self, name: str, concurrency_key: None = None) -> ConcurrencyLimitItem: ...

    @overload
    def reset(self, name: str, concurrency_key: Key) -> ConcurrencyLimitKeyItem: ...

    def reset(
        self, name: str, concurrency_key: Key | None = None
    ) -> ConcurrencyLimitItem | ConcurrencyLimitKeyItem:
        """Back to the declared bounds; with ``concurrency_key``, clear that key's cap."""
        if concurrency_key is None:
            return ConcurrencyLimitItem.model_validate(
                self._call("POST", _path(name, "/reset"), {})
            )
        data = self._call("POST", _path(name, "/reset"), {"concurrencyKey": concurrency_key})
        return ConcurrencyLimitKeyItem.model_validate(data)

    def pause(self, name: str) -> ConcurrencyLimitItem:
        """Admit no more runs holding this limit (runs executing finish)."""
        return ConcurrencyLimitItem.model_validate(
            self._call("POST", _path(name, "/pause"), {"action": "pause"})
        )

    def resume(self, name: str) -> ConcurrencyLimitItem:
        """Admit again, in order."""
        return ConcurrencyLimitItem.model_validate(
            self._call("POST", _path(name, "/pause"), {"action": "resume"})
        )
