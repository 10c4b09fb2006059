"""Text Postgres cannot store (U+0000) is a 400 naming the field, and nothing is written
on every route that writes what the caller sent (docs/api.md#errors)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from reprise_server.shared.commands.models import Command
from reprise_server.shared.db import transaction
from reprise_server.shared.runs.models import Run
from tests.support import triggers
from tests.support.fixtures import ProjectKeys

NUL = "\u0000"


def counts() -> tuple[int, int]:
    with transaction() as session:
        runs = session.execute(select(func.count()).select_from(Run)).scalar_one()
        commands = session.execute(select(func.count()).select_from(Command)).scalar_one()
    return int(runs), int(commands)


def post(api: Any, path: str, body: Any, project: ProjectKeys) -> Any:
    return api.post(path, content=json.dumps(body), headers={
        **project.headers(), "content-type": "application/json"})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {"name": f"A{NUL}da"}}, "payload.name"),
        ({"payload": [1, f"x{NUL}"]}, "payload[1]"),
        ({"payload": {f"k{NUL}": 1}}, "payload"),
        ({"payload": f"raw{NUL}", "options": {"payloadType": "text/plain"}}, "payload"),
        ({"payload": json.dumps({"json": {"a": NUL}, "meta": {}}),
          "options": {"payloadType": "application/super+json"}}, "payload.a"),
        ({"options": {"tags": ["ok", f"t{NUL}"]}}, "options.tags[1]"),
        ({"options": {"metadata": {"m": {"deep": NUL}}}}, "options.metadata.m.deep"),
        ({"options": {"idempotencyKey": f"key{NUL}"}}, "options.idempotencyKey"),
        ({"options": {"concurrencyKey": f"c{NUL}"}}, "options.concurrencyKey"),
        ({"options": {"queue": {"name": f"q{NUL}"}}}, "options.queue.name"),
    ],
)
def test_trigger_with_a_nul_character_is_a_400_naming_the_field(
    api: Any, project: ProjectKeys, body: dict[str, Any], field: str
) -> None:
    before = counts()
    response = post(api, "/api/v1/tasks/test-echo/trigger", body, project)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": f"{field} contains a NUL character (U+0000), which cannot be stored"
    }
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {"a": NUL}}, "payload.a"),
        ({"tags": [f"t{NUL}"]}, "tags[0]"),
        ({"metadata": {"m": NUL}}, "metadata.m"),
        ({"payload": "x", "concurrencyKey": f"c{NUL}"}, "concurrencyKey"),
    ],
)
def test_replay_with_a_nul_character_is_a_400_naming_the_field(
    api: Any, project: ProjectKeys, body: dict[str, Any], field: str
) -> None:
    original = triggers.via_api(api, project)
    before = counts()
    response = post(api, f"/api/v1/runs/{original}/replay", body, project)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field} contains a NUL character")
    assert counts() == before


def test_reschedule_with_a_nul_character_is_a_400_naming_the_delay(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    before = counts()
    response = post(api, f"/api/v1/runs/{run_id}/reschedule", {"delay": f"2h{NUL}"}, project)
    assert response.status_code == 400
    assert response.json() == {
        "error": "delay contains a NUL character (U+0000), which cannot be stored"
    }
    assert counts() == before
