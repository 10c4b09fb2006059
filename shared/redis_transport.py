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
from kombu.utils.json import dumps

TRANSPORT = f"{__name__}:Transport"
SCHEMES = ("redis", "unix")
# A message carrying this header goes to the head of its queue, the end consumers pop
# next, instead of the tail (see ``Channel._put``).
HEAD_HEADER = "reprise_head"


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

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Publish at the tail (``LPUSH``), or with :data:`HEAD_HEADER` at the head
        (``RPUSH``: consumers pop with ``BRPOP``), where kombu itself puts back the
        unacknowledged messages it redelivers. Reprise sends a recovered run's message
        there: it waited once already (docs/architecture.md#faults-cost-their-length)."""
        if not (message.get("headers") or {}).get(HEAD_HEADER):
            super()._put(queue, message, **kwargs)  # type: ignore[no-untyped-call]
            return
        priority = self._get_message_priority(message, reverse=False)  # type: ignore[no-untyped-call]
        key = self._q_for_pri(queue, priority)  # type: ignore[no-untyped-call]
        payload = dumps(message)  # type: ignore[no-untyped-call]
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:
            batch.add("rpush", key, payload)
            return
        with self.conn_or_acquire() as client:
            client.rpush(key, payload)

    def put_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """:meth:`_put` each ``(queue, message)``, every Redis command in one pipeline (one
        round trip, not a transaction; a lone message is put as it is): a message is on its
        list once this returns; after a failure, any of them may be. kombu's ``_put`` hands
        its commands to ``add`` of the ``_publish_batch`` it is given instead of sending
        them (kombu's own publish batches use the same hook, from kombu 5.7); an older
        kombu's ``_put`` ignores it and sends each message in its own round trip, as
        before."""
        if len(messages) == 1:
            self._put(*messages[0])
            return
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipeline:
            batch = _Pipelined(pipeline)
            for queue, message in messages:
                self._put(queue, message, _publish_batch=batch)
            pipeline.execute()


class _Pipelined:
    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def add(self, name: str, *args: Any) -> None:
        getattr(self.pipeline, name)(*args)


class Transport(kombu_redis.Transport):
    Channel = Channel
