"""One request-key window for trigger, batch create and replay accept: the SDK's retry of
the same request inside the window answers the first result; once the window has passed,
a request with that key is a new request."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from reprise_server.shared.db import transaction
from reprise_server.shared.settings import get_settings
from tests.support import triggers
from tests.support.commands import ParkedCommands, parked_commands
from tests.support.fixtures import ProjectKeys


def _age(table: str, row_id: str, hours: float) -> None:
    """Make the row as old as ``hours`` (as if that much time had passed since it was accepted)."""
    assert table in {"runs", "batches", "commands"}
    with transaction() as session:
        session.execute(
            text(f"UPDATE {table} SET created_at = now() - make_interval(secs => :s) "
                 "WHERE id = :id"),
            {"s": hours * 3600, "id": row_id},
        )


def _retry_key(project: ProjectKeys) -> dict[str, str]:
    return project.headers(**{"x-trigger-request-idempotency-key": str(uuid.uuid4())})


def _trigger(api: Any, headers: dict[str, str]) -> Any:
    return api.post("/api/v1/tasks/test-echo/trigger", json={"payload": 1}, headers=headers)


def _create_batch(api: Any, headers: dict[str, str]) -> Any:
    return api.post("/api/v3/batches", json={"runCount": 1}, headers=headers)


def _key_holder(table: str, request_key: str) -> list[str]:
    with transaction() as session:
        return list(session.scalars(
            text(f"SELECT id FROM {table} WHERE request_idempotency_key = :k"), {"k": request_key}
        ))


__all__ = ["parked_commands"]  # the fixture

WINDOW_HOURS = get_settings().request_idempotency_hours
INSIDE, AFTER = WINDOW_HOURS - 0.1, WINDOW_HOURS + 0.1


@pytest.mark.parametrize(("create", "table"), [(_trigger, "runs"), (_create_batch, "batches")])
def test_a_retry_inside_the_window_answers_the_first_result(
    api: Any, project: ProjectKeys, create: Any, table: str
) -> None:
    headers = _retry_key(project)
    first = create(api, headers)
    _age(table, first.json()["id"], INSIDE)

    retried = create(api, headers)

    assert first.status_code == retried.status_code < 300
    assert retried.json() == first.json()  # the first answer, not "isCached"
    assert _key_holder(table, headers["x-trigger-request-idempotency-key"]) == [first.json()["id"]]


@pytest.mark.parametrize(("create", "table"), [(_trigger, "runs"), (_create_batch, "batches")])
def test_a_request_after_the_window_is_new_and_takes_the_key(
    api: Any, project: ProjectKeys, create: Any, table: str
) -> None:
    headers = _retry_key(project)
    first = create(api, headers).json()["id"]
    _age(table, first, AFTER)

    second = create(api, headers)

    assert second.status_code < 300
    assert second.json()["id"] != first
    assert "isCached" not in second.json() or second.json()["isCached"] is False
    # The old row gave the key up (a unique index holds it): the new one has it.
    assert _key_holder(table, headers["x-trigger-request-idempotency-key"]) == [second.json()["id"]]


def test_a_replay_retried_inside_the_window_answers_the_first_replay(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = triggers.via_api(api, project, delay="1h")
    headers = _retry_key(project)
    first = api.post(f"/api/v1/runs/{original}/replay", headers=headers)
    _age("commands", parked_commands.command_ids()[0], INSIDE)

    retried = api.post(f"/api/v1/runs/{original}/replay", headers=headers)

    assert first.status_code == retried.status_code == 200
    assert retried.json() == first.json()
    assert len(parked_commands.command_ids()) == 1


def test_a_replay_after_the_window_is_a_new_replay(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = triggers.via_api(api, project, delay="1h")
    headers = _retry_key(project)
    first = api.post(f"/api/v1/runs/{original}/replay", headers=headers).json()["id"]
    _age("commands", parked_commands.command_ids()[0], AFTER)

    second = api.post(f"/api/v1/runs/{original}/replay", headers=headers)

    assert second.status_code == 200
    assert second.json()["id"] != first
    assert len(parked_commands.command_ids()) == 2
