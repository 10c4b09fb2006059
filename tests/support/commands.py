"""Helpers for command tests: command rows, forced interleavings, and a queue no worker consumes.

``parked_commands`` sends the real ``reprise.apply_command`` Celery messages to a real
Redis queue that no worker consumes, so a test decides whether (and when) a worker gets
to apply a command, whatever else the session's in-process worker is doing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, text


def post(api: Any, url: str, body: Any, headers: dict[str, str]) -> Any:
    """POST ``body`` as sent: a str as raw text, None as no body, anything else as JSON."""
    if isinstance(body, str):
        return api.post(url, content=body, headers=headers)
    if body is None:
        return api.post(url, headers=headers)
    return api.post(url, json=body, headers=headers)


def command_row(command_id: str) -> Any:
    from reprise_server.shared.commands.models import Command
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return session.get(Command, command_id)


def commands_for(run_id: str) -> list[Any]:
    from reprise_server.shared.commands import repository as repo
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return repo.commands_of_run(session, run_id)


def command_for_target(target_run_id: str) -> Any:
    from reprise_server.shared.commands.models import Command
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return session.scalars(
            select(Command).where(Command.target_run_id == target_run_id)
        ).one()


def count(table: str) -> int:
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def replays_of(run_id: str) -> int:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.models import Run

    with transaction() as session:
        return int(
            session.execute(
                select(func.count()).select_from(Run).where(Run.replayed_from == run_id)
            ).scalar_one()
        )


def backdate_delay(run_id: str, seconds: int = 1) -> None:
    """Make a DELAYED run due (as if its time had come) without touching its token."""
    from reprise_server.shared.db import transaction

    with transaction() as session:
        session.execute(
            text(
                "UPDATE runs SET delayed_until = now() - make_interval(secs => :s) "
                "WHERE id = :id"
            ),
            {"id": run_id, "s": seconds},
        )


@contextlib.contextmanager
def held(step: Callable[[Any], Any]) -> Iterator[Any]:
    """Run ``step(session)`` in a transaction on another thread and keep that transaction
    open, with the row locks it took, until the block ends; yields what ``step`` returned.

    To force an interleaving: start the other side inside the block and wait until it is
    seen waiting for a lock (:func:`lock_waiters`).
    """
    from reprise_server.shared.db import transaction

    done, release, outcome = threading.Event(), threading.Event(), {}

    def hold() -> None:
        with transaction() as session:
            outcome["value"] = step(session)
            done.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert done.wait(10), "the held step did not finish"
    try:
        yield outcome["value"]
    finally:
        release.set()
        thread.join(10)


@dataclass
class ParkedCommands:
    queue: str
    client: Any
    real_publish: Any
    real_publish_many: Any

    def command_ids(self) -> list[str]:
        """The command ids parked so far, once every publish the API started has finished."""
        from reprise_server.shared.commands.publisher import PUBLISHER

        assert PUBLISHER.flush()
        found = []
        for raw in self.client.lrange(self.queue, 0, -1):
            message = json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
            found.append(args[0])
        return found

    def delete_all(self) -> int:
        return int(self.client.delete(self.queue))

    def unpark(self) -> None:
        """From now on commands are published to the queue workers consume."""
        from reprise_server.shared import broker

        broker.publish_command = self.real_publish  # type: ignore[method-assign]
        broker.publish_commands = self.real_publish_many  # type: ignore[method-assign]


@pytest.fixture
def parked_commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[ParkedCommands]:
    import redis

    from reprise_server.shared import broker
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    queue = f"{settings.queue_prefix}.parked-commands"

    def publish_to_parking(command_id: str) -> None:
        broker.celery_app().send_task(broker.APPLY_COMMAND, args=[command_id], queue=queue)

    def publish_many_to_parking(command_ids: Any) -> None:
        for command_id in command_ids:
            publish_to_parking(command_id)

    real_publish, real_publish_many = broker.publish_command, broker.publish_commands
    monkeypatch.setattr(broker, "publish_command", publish_to_parking)
    monkeypatch.setattr(broker, "publish_commands", publish_many_to_parking)
    client = redis.Redis.from_url(settings.redis_url)
    parked = ParkedCommands(queue, client, real_publish, real_publish_many)
    yield parked
    from reprise_server.shared.commands.publisher import PUBLISHER

    PUBLISHER.flush()
    parked.delete_all()
    client.close()
