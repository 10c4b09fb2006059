"""kombu's Redis transport, with one redis-py client per channel instead of one per command.

kombu's Redis channel builds a new ``redis.Redis`` object for every command it sends
outside its consumer loop (``Channel.conn_or_acquire``): each publish, each task event,
each acknowledgement. Building one copies redis-py's ~170 response callbacks into a
case-insensitive dict (redis-py issue #3624), which profiles at about a quarter of a
worker's main-process CPU (task events and acks) and a fifth of a publish
(``bench/RESULTS.md``, "Throughput"). A ``redis.Redis`` object holds no connection of its
own — it borrows one from the channel's pool per command and is safe to share between
threads — so one per channel, over the same pool, changes nothing else: same connections,
same commands, same transport options.

``shared.broker`` selects it for ``redis://`` and ``unix://`` broker URLs unless
``REPRISE_BROKER_SHARED_CLIENT=false``; other schemes (``rediss://``, Sentinel) keep
kombu's stock transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = f"{__name__}:Transport"
SCHEMES = ("redis", "unix")


class Channel(kombu_redis.Channel):
    _command_client: Any = None
    _command_client_pool: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool  # rebuilt by kombu after the channel lost its connections
        if self._command_client is None or self._command_client_pool is not pool:
            self._command_client = self._create_client()  # type: ignore[no-untyped-call]
            self._command_client_pool = pool
        yield self._command_client


class Transport(kombu_redis.Transport):
    Channel = Channel
