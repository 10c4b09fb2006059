"""Wakes the realtime long-polls of this api process when a run they follow changes.

One ``LISTEN reprise_runs`` connection per process, opened at the first subscription; the
database trigger on ``runs`` sends ``NOTIFY reprise_runs`` at commit with the environment,
run, batch and tags. A notification wakes the waiters registered under ``run:<id>``,
``batch:<id>``, ``tag:<env>:<tag>`` or ``env:<id>``, which each re-read their shape. Why
Postgres and not Redis pub/sub: docs/architecture.md#realtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator

import psycopg
from sqlalchemy.engine import make_url

from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.realtime")

CHANNEL = "reprise_runs"
RECONNECT_SECONDS = 1.0


class RunChangeHub:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @contextlib.contextmanager
    def watch(self, keys: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set by the next change notified under any of ``keys`` (register it
        before reading, so a change between the read and the wait is not missed)."""
        event = asyncio.Event()
        keys = tuple(keys)
        for key in keys:
            self._waiters[key].add(event)
        try:
            yield event
        finally:
            for key in keys:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiters[key]

    async def start(self, timeout: float = 2.0) -> None:
        """Start listening (once per process); waits a little for the first LISTEN."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout)

    def _wake(self, keys: Iterable[str]) -> None:
        for key in keys:
            for event in self._waiters.get(key, ()):
                event.set()

    def _wake_all(self) -> None:
        for waiting in list(self._waiters.values()):
            for event in waiting:
                event.set()

    def _dispatch(self, payload: str) -> None:
        try:
            change = json.loads(payload)
            keys = [f"env:{change['e']}", f"run:{change['r']}"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable realtime notification: %.200s", payload)
            return
        if change.get("b"):
            keys.append(f"batch:{change['b']}")
        keys += [f"tag:{change['e']}:{tag}" for tag in change.get("t") or ()]
        self._wake(keys)

    async def _listen(self) -> None:
        url = make_url(get_settings().database_url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    self._wake_all()  # whatever happened while we were not listening
                    async for notification in connection.notifies():
                        self._dispatch(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("realtime LISTEN connection lost (%s); reconnecting", exc)
            self._listening.clear()
            self._wake_all()
            await asyncio.sleep(RECONNECT_SECONDS)


_HUBS: dict[int, RunChangeHub] = {}


def run_change_hub() -> RunChangeHub:
    """This event loop's hub (one per process in production; tests may run several loops)."""
    loop = asyncio.get_running_loop()
    hub = _HUBS.get(id(loop))
    if hub is None:
        hub = _HUBS[id(loop)] = RunChangeHub()
    return hub
