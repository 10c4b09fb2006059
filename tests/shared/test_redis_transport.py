"""Reprise's Redis transport: kombu's, with one redis-py client per channel (real Redis)."""

from __future__ import annotations

import secrets

from kombu import Connection, Queue  # type: ignore[attr-defined]

from reprise_server.shared import redis_transport
from reprise_server.shared.broker import broker_transport, celery_app
from reprise_server.shared.settings import Settings, get_settings


def _settings(url: str, **values: object) -> Settings:
    return Settings(database_url="postgresql://u@h/db", redis_url=url, **values)  # type: ignore[arg-type]


def test_plain_redis_urls_use_reprise_transport_and_others_keep_kombus() -> None:
    assert broker_transport(_settings("redis://h:6379/0")) == redis_transport.TRANSPORT
    assert broker_transport(_settings("unix:///run/redis.sock")) == redis_transport.TRANSPORT
    assert broker_transport(_settings("rediss://h:6380/0")) is None
    assert broker_transport(_settings("sentinel://h:26379")) is None
    assert broker_transport(_settings("redis://h:6379/0", broker_shared_client=False)) is None


def test_the_app_publishes_and_consumes_through_one_client_per_channel() -> None:
    app = celery_app()
    queue = Queue(f"test-transport-{secrets.token_hex(4)}")
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, redis_transport.Transport)
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        with connection.Producer() as producer:
            for i in range(20):
                producer.publish({"n": i}, routing_key=queue.name, declare=[queue])
        with channel.conn_or_acquire() as client:
            assert client is first
            assert client.llen(queue.name) == 20
        got = []
        with connection.SimpleQueue(queue) as simple:
            for _ in range(20):
                message = simple.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
        assert got == list(range(20))


def test_a_channel_whose_pool_was_dropped_gets_a_client_on_the_new_pool() -> None:
    with Connection(get_settings().redis_url, transport=redis_transport.TRANSPORT) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as before:
            assert before.ping()
        channel._disconnect_pools()  # what kombu does when the channel's connections break
        with channel.conn_or_acquire() as after:
            assert after is not before
            assert after.connection_pool is channel.pool
            assert after.ping()
