"""Reprise's Redis transport: kombu's, with one redis-py client per channel, and the
executions published straight onto it (real Redis)."""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Queue  # type: ignore[attr-defined]

from reprise_server.shared import broker, redis_transport
from reprise_server.shared.broker import broker_transport, celery_app, configure_celery
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


def _queued(client: Any, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    """A message without what differs between any two publishes (ids, clocks, the
    publishing process, the queue)."""
    message = json.loads(json.dumps(message))
    for key in ("id", "root_id", "origin", broker.PUBLISHED_HEADER):
        message["headers"].pop(key)
    message["headers"]["eta"] = message["headers"]["eta"] is not None
    for key in ("correlation_id", "delivery_tag", "reply_to"):
        message["properties"].pop(key)
    message["properties"]["delivery_info"].pop("routing_key")
    return message


@pytest.mark.parametrize(
    ("kwargs", "countdown"), [(None, None), ({"watch": "w1@host"}, 2.5)],
    ids=["plain", "watching, with a countdown"],
)
def test_an_execution_is_published_as_the_very_message_send_task_writes(
    kwargs: dict[str, str] | None, countdown: float | None,
) -> None:
    """Executions skip ``send_task`` on Reprise's transport: what lands in Redis must be
    what Celery itself would have written, so that any worker consumes it as its own."""
    app = celery_app()
    direct, celery = (f"test-direct-{secrets.token_hex(4)}" for _ in range(2))
    run_queue = app.conf.task_default_queue
    broker.dispatch_run("run_x", direct, countdown, watch=(kwargs or {}).get("watch"))
    app.send_task(broker.EXECUTE_RUN, args=["run_x"], kwargs=kwargs, countdown=countdown,
                  queue=f"{run_queue}.{celery}", headers={broker.PUBLISHED_HEADER: 1.0})
    with app.connection_for_write() as connection, \
            connection.default_channel.conn_or_acquire() as client:
        [sent] = _queued(client, f"{run_queue}.{direct}")
        [expected] = _queued(client, f"{run_queue}.{celery}")
        client.delete(f"{run_queue}.{direct}", f"{run_queue}.{celery}")
    assert _comparable(sent) == _comparable(expected)
    assert sent["headers"]["id"] == sent["headers"]["root_id"] == sent["properties"][
        "correlation_id"]
    assert sent["properties"]["delivery_info"]["routing_key"] == f"{run_queue}.{direct}"
    assert isinstance(sent["headers"][broker.PUBLISHED_HEADER], float)


def test_recovered_executions_go_to_the_head_of_their_queue() -> None:
    app = celery_app()
    queue = f"test-head-{secrets.token_hex(4)}"
    target = f"{app.conf.task_default_queue}.{queue}"
    broker.dispatch_runs([("run_waiting", queue)])
    broker.dispatch_runs([("run_recovered", queue)], head=True)
    with app.connection_for_write() as connection, \
            connection.default_channel.conn_or_acquire() as client:
        # Consumers pop from the right: the head.
        order = [json.loads(base64.b64decode(m["body"]))[0][0]
                 for m in reversed(_queued(client, target))]
        client.delete(target)
    assert order == ["run_recovered", "run_waiting"]


def test_executions_published_together_land_as_send_task_would_write_each() -> None:
    """Many executions (a transaction that queued several runs) go out in one pipeline;
    each is still the message ``send_task`` writes, on its own queue, in order."""
    app = celery_app()
    run_queue = app.conf.task_default_queue
    first, second, celery = (f"test-many-{secrets.token_hex(4)}" for _ in range(3))
    broker.dispatch_executions([("run_a", first, None), ("run_b", second, 2.5),
                                ("run_c", first, None)])
    app.send_task(broker.EXECUTE_RUN, args=["run_b"], countdown=2.5,
                  queue=f"{run_queue}.{celery}", headers={broker.PUBLISHED_HEADER: 1.0})
    with app.connection_for_write() as connection, \
            connection.default_channel.conn_or_acquire() as client:
        on_first = list(reversed(_queued(client, f"{run_queue}.{first}")))
        [on_second] = _queued(client, f"{run_queue}.{second}")
        [expected] = _queued(client, f"{run_queue}.{celery}")
        client.delete(*(f"{run_queue}.{name}" for name in (first, second, celery)))
    assert [json.loads(base64.b64decode(m["body"]))[0][0] for m in on_first] == [
        "run_a", "run_c"]
    assert _comparable(on_second) == _comparable(expected)


def test_another_transport_publishes_through_send_task() -> None:
    settings = _settings("rediss://h:6380/0")
    app = configure_celery(Celery("other-transport"), settings)
    assert broker._published_directly(app, [("run_x", "q", None, None, {})]) is False
