"""Wakes the realtime long-polls of this api process when a run they follow changes.

One ``LISTEN reprise_runs`` connection per process, opened at the first subscription and
closed once no subscription has waited for :data:`IDLE_SECONDS`. While it is open the
process keeps a row in ``realtime_listeners`` alive; the database trigger on ``runs`` sends
``NOTIFY reprise_runs`` at commit, with the environment, run, batch and tags, only while
such a row has not expired (nobody listening, no run write pays for a notification). A
notification wakes the waiters registered under ``run:<id>``, ``batch:<id>``,
``tag:<env>:<tag>`` or ``env:<id>``, which each re-read their shape. Why Postgres and not
Redis pub/sub: docs/architecture.md#realtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator

import psycopg
from sqlalchemy.engine import make_url

from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.realtime")

CHANNEL = "reprise_runs"
RECONNECT_SECONDS = 1.0
# A registration lapses this long after it was last renewed (a crashed process's row stops
# the notifications by itself); renewed every REFRESH_SECONDS while the process listens.
REGISTRATION_SECONDS = 60.0
REFRESH_SECONDS = 20.0
# With no subscription waiting for this long, the process stops listening and unregisters.
IDLE_SECONDS = 60.0

_REGISTER = (
    "INSERT INTO realtime_listeners (listener, expires_at) "
    "VALUES (%(me)s, now() + make_interval(secs => %(seconds)s)) "
    "ON CONFLICT (listener) DO UPDATE SET expires_at = excluded.expires_at"
)
_FORGET_EXPIRED = "DELETE FROM realtime_listeners WHERE expires_at < now() - interval '1 hour'"
_UNREGISTER = "DELETE FROM realtime_listeners WHERE listener = %(me)s"


class RunChangeHub:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closing = False
        self._last_wanted = time.monotonic()

    @contextlib.contextmanager
    def watch(self, keys: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set by the next change notified under any of ``keys`` (register it
        before reading, so a change between the read and the wait is not missed)."""
        event = asyncio.Event()
        keys = tuple(keys)
        self._last_wanted = time.monotonic()
        for key in keys:
            self._waiters[key].add(event)
        try:
            yield event
        finally:
            self._last_wanted = time.monotonic()
            for key in keys:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiters[key]

    async def start(self, timeout: float = 2.0) -> None:
        """Start listening (once per process, again after an idle stop); waits a little
        for the LISTEN and the registration."""
        self._last_wanted = time.monotonic()
        if self._task is None or self._task.done() or self._closing:
            self._closing = False
            self._listening.clear()
            self._task = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout)

    def _wake(self, keys: Iterable[str]) -> None:
        for key in keys:
            for event in self._waiters.get(key, ()):
                event.set()

    def _idle(self) -> bool:
        return not self._waiters and time.monotonic() - self._last_wanted > IDLE_SECONDS

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
        me = {"me": f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(6)}",
              "seconds": REGISTRATION_SECONDS}
        closing = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    await connection.execute(_REGISTER, me)
                    await connection.execute(_FORGET_EXPIRED)
                    self._listening.set()
                    self._wake_all()  # whatever happened while we were not listening
                    while True:
                        async for notification in connection.notifies(timeout=REFRESH_SECONDS):
                            self._dispatch(notification.payload)
                        if self._idle():
                            # No await between the check and the flag: a subscription
                            # arriving from here on starts a listener of its own.
                            closing = self._closing = True
                            self._listening.clear()
                            await connection.execute(_UNREGISTER, me)
                            return
                        await connection.execute(_REGISTER, me)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("realtime LISTEN connection lost (%s); reconnecting", exc)
            if closing:
                return
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
