"""Wakes the realtime long-polls of this api process when a run they follow changes.

One ``LISTEN reprise_runs`` connection per process (psycopg, async, autocommit), opened
at the first subscription. The trigger of migration ``0004_batches`` sends
``NOTIFY reprise_runs '{"e": env, "r": run, "b": batch, "t": tags}'`` from every write
of what realtime shows; Postgres delivers it when (and only if) that transaction commits.
A notification sets the events of the waiters registered under ``run:<id>``,
``batch:<id>``, ``tag:<env>:<tag>`` (one per tag of the run) or ``env:<id>``; each waiter then re-reads its shape (one indexed query)
and answers if something changed, so a change costs one query per subscriber it concerns
and an idle subscription costs nothing until its long-poll times out.

Why Postgres and not Redis pub/sub: the notification is part of the transaction that made
the change (never sent for a rollback, never before the commit is visible), every writer
— lifecycle moves, sweeps' batch moves, any route updating a run — notifies without
knowing about realtime, and Redis stays only the broker (§1). A notification lost while
the connection was down only delays an answer: on reconnecting every waiter re-reads, and
each long-poll re-reads before it times out anyway (offsets are snapshots, so a re-read
never misses a change).
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
