"""kombu's Redis transport, with one redis-py client per channel instead of one per command.

kombu builds a new ``redis.Redis`` for every command outside its consumer loop (each
publish, task event and ack), copying redis-py's response callbacks each time (redis-py
#3624): about a quarter of a worker main process's CPU (``bench/RESULTS.md``,
"Throughput"). A ``redis.Redis`` holds no connection of its own, so one per channel over
the same pool changes nothing else. :mod:`shared.broker` selects it for ``redis://`` and
``unix://`` URLs unless ``REPRISE_BROKER_SHARED_CLIENT=false``.
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
