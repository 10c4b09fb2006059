"""The recovery sweep against a real Redis: a lost execution message is decided from what
its queue shows (FIFO order, messages held by workers), so traffic cannot postpone it, and
a recovered run gets one message, at the head of its queue."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, update

from reprise_server.shared import broker
from reprise_server.shared.db import transaction
from reprise_server.shared.runs import attempts as steps
from reprise_server.shared.runs.lifecycle import cancel, redispatch_lost
from reprise_server.shared.runs.models import Run
from reprise_server.shared.settings import get_settings
from tests.support import triggers
from tests.support.fixtures import ProjectKeys


def _runs_in(queue_name: str) -> list[str | None]:
    """The runs of the messages in a queue, next to be taken first."""
    client = broker.broker_client(get_settings().redis_url)
    raws = client.lrange(queue_name, 0, -1)
    return [broker._run_id(broker._decode(raw)) for raw in reversed(raws)]


def _delete_message_of(queue_name: str, run_id: str) -> None:
    client = broker.broker_client(get_settings().redis_url)
    [raw] = [r for r in client.lrange(queue_name, 0, -1)
             if broker._run_id(broker._decode(r)) == run_id]
    assert client.lrem(queue_name, 1, raw) == 1


def _sweep() -> int:
    with transaction() as session:
        return redispatch_lost(session)


def test_a_lost_message_is_recovered_within_the_bound_while_its_queue_never_drains(
    project: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer keeps the queue from ever draining, a consumer takes (and ends) the
    runs in order, and the message of one run is deleted from Redis: the sweep republishes
    it once its window passed and the queue's oldest message is younger than it — never
    one of the runs whose messages are waiting, even those older than the window."""
    settings = get_settings()
    monkeypatch.setattr(settings, "redispatch_after_seconds", 1.0)
    queue = f"busy-{project.slug}"
    name = broker.run_queue(settings, queue)
    client = broker.broker_client(settings.redis_url)
    stop = threading.Event()
    depth: list[int] = []
    recovered_at: list[float] = []

    def produce() -> None:  # ~10 runs a second, for as long as the test lasts
        while not stop.is_set():
            triggers.in_db(project, "test-echo", queue=queue)
            time.sleep(0.1)

    def consume() -> None:  # a worker keeping ~20 messages (2 s) waiting
        while not stop.is_set():
            depth.append(int(client.llen(name)))
            if depth[-1] <= 20:
                time.sleep(0.05)
                continue
            run_id = broker._run_id(broker._decode(client.rpop(name)))
            if run_id == lost:
                recovered_at.append(time.monotonic())
                return
            with transaction() as session:
                cancel(session, str(run_id))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    while client.llen(name) < 20:
        time.sleep(0.05)
    lost = triggers.in_db(project, "test-echo", queue=queue)
    _delete_message_of(name, lost)
    deleted = time.monotonic()
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    republished = 0
    try:
        while not recovered_at and time.monotonic() - deleted < 20:
            republished += _sweep()
            time.sleep(0.25)  # the sweep interval
    finally:
        stop.set()
        producer.join()
        consumer.join()
    assert recovered_at, "the lost run was never republished"
    # The bound: its window, or how long a message waits in the queue (~2 s) plus the
    # publish margin, plus a sweep; with room for a loaded machine.
    assert recovered_at[0] - deleted < 2.0 + broker.PUBLISH_MARGIN_SECONDS + 2.5
    assert republished == 1  # the lost run only: the waiting ones are not republished
    assert min(depth) > 0  # the queue never drained


def test_a_killed_run_gets_one_recovery_message_at_the_head_of_its_queue(
    project: ProjectKeys,
) -> None:
    """The recovery message goes ahead of the backlog, and is not republished while it
    waits there (however long); only its loss makes the sweep publish another."""
    settings = get_settings()
    queue = f"killed-{project.slug}"
    name = broker.run_queue(settings, queue)
    backlog = [triggers.in_db(project, "test-echo", queue=queue) for _ in range(5)]
    killed = triggers.in_db(project, "test-echo", queue=queue, publish=False)
    with transaction() as session:
        assert not isinstance(steps.claim_run(session, killed, "dead-worker"), steps.Outcome)
    with transaction() as session:
        assert steps.begin_attempt(session, killed, "dead-worker", "20261122.1") is not None

    def stale_window_passes() -> None:
        with transaction() as session:
            session.execute(update(Run).where(Run.id == killed).values(
                heartbeat_at=func.now() - timedelta(seconds=60),
                dispatched_at=func.now() - timedelta(seconds=120),
            ))

    try:
        stale_window_passes()
        assert _sweep() == 1
        assert _runs_in(name) == [killed, *backlog]  # taken next, ahead of the backlog
        stale_window_passes()  # it waited behind a worker busy for a whole window
        assert _sweep() == 0
        assert _runs_in(name) == [killed, *backlog]
        _delete_message_of(name, killed)  # the recovery message itself is lost
        stale_window_passes()
        assert _sweep() == 1
        assert _runs_in(name) == [killed, *backlog]
    finally:
        broker.broker_client(settings.redis_url).delete(name)


def test_a_message_a_worker_received_recently_is_in_flight_and_a_dead_workers_is_not(
    project: ProjectKeys,
) -> None:
    """A queued run whose message a worker took from the queue but has not started yet is
    not republished; once that delivery is older than the window (its worker died holding
    it), it is."""
    from kombu import Connection, Queue  # type: ignore[attr-defined]

    settings = get_settings()
    queue = f"held-{project.slug}"
    name = broker.run_queue(settings, queue)
    run_id = triggers.in_db(project, "test-echo", queue=queue)
    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(
            dispatched_at=func.now() - timedelta(hours=1)))
    with Connection(settings.redis_url) as connection, connection.SimpleQueue(
        Queue(name)
    ) as simple:
        held: Any = simple.get(timeout=5)  # delivered, not acknowledged: in ``unacked``
        try:
            assert broker.runs_in_flight([run_id])
            assert _sweep() == 0
            client = broker.broker_client(settings.redis_url)
            client.zadd(broker.UNACKED_INDEX_KEY, {held.delivery_tag: time.time() - 3600})
            assert _sweep() == 1
        finally:
            held.ack()
            broker.broker_client(settings.redis_url).delete(name)


def test_runs_dispatched_together_are_not_lost_while_their_messages_wait_behind_the_first(
    project: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs queued in one transaction share its dispatch time, and a long transaction (a
    batch of hundreds under load) publishes them all long after it: the oldest message of
    the queue then bears a publish time far past their dispatch. Its own dispatch time
    says the others are behind it, and none is republished."""
    settings = get_settings()
    monkeypatch.setattr(settings, "redispatch_after_seconds", 1.0)
    queue = f"batch-{project.slug}"
    name = broker.run_queue(settings, queue)
    batch = [triggers.in_db(project, "test-echo", queue=queue) for _ in range(5)]
    try:
        with transaction() as session:  # one transaction's time, a minute before its publish
            session.execute(update(Run).where(Run.id.in_(batch)).values(
                dispatched_at=func.now() - timedelta(seconds=60)))
        assert _runs_in(name) == batch
        assert _sweep() == 0
        assert _runs_in(name) == batch
        client = broker.broker_client(settings.redis_url)

        def take(count: int) -> None:  # a worker takes the next messages and ends their runs
            for _ in range(count):
                run_id = broker._run_id(broker._decode(client.rpop(name)))
                with transaction() as session:
                    cancel(session, str(run_id))

        take(1)  # the rest are still behind the new oldest message
        assert _sweep() == 0
        # One of them is lost: it is recovered once the messages before it are taken and
        # the queue is empty (its window passed), like any lost message.
        _delete_message_of(name, batch[4])
        assert _sweep() == 0
        take(3)
        assert _sweep() == 1
        assert _runs_in(name) == [batch[4]]
    finally:
        broker.broker_client(settings.redis_url).delete(name)
