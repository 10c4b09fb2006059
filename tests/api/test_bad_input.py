"""Bad input is a 400 (or 413) naming the field, in the documented ``{"error": message}``
shape, and writes nothing: values JSON or Postgres cannot carry (NaN, Infinity, a number
that overflows, a lone surrogate), types the official SDK's schemas refuse, unsafe queue
names, oversized metadata, a schedule faster than the scheduler, and bodies nested too
deep (docs/api.md#errors)."""

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

TRIGGER = "/api/v1/tasks/test-echo/trigger"
JSON = {"content-type": "application/json"}
# Raw JSON texts Python's json module reads but Postgres refuses to store.
NAN, INF, NEG_INF, OVERFLOW = "NaN", "Infinity", "-Infinity", "1e400"
SURROGATE = '"\\ud800"'


def counts() -> tuple[int, int]:
    with transaction() as session:
        runs = session.execute(select(func.count()).select_from(Run)).scalar_one()
        commands = session.execute(select(func.count()).select_from(Command)).scalar_one()
    return int(runs), int(commands)


def send(api: Any, path: str, raw: str, project: ProjectKeys, method: str = "POST") -> Any:
    return api.request(method, path, content=raw, headers={**project.headers(), **JSON})


def refused(response: Any, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (f'{{"payload": {{"x": {NAN}}}}}', "payload.x is NaN, which JSON cannot carry"),
        (f'{{"payload": [1, {INF}]}}', "payload[1] is Infinity, which JSON cannot carry"),
        (f'{{"payload": {{"x": {NEG_INF}}}}}', "payload.x is -Infinity, which JSON cannot carry"),
        (f'{{"payload": {{"big": {OVERFLOW}}}}}',
         "payload.big is Infinity, which JSON cannot carry"),
        (f'{{"payload": {{"s": {SURROGATE}}}}}',
         "payload.s contains a lone surrogate (U+D800), which cannot be stored"),
        (f'{{"options": {{"metadata": {{"m": {NAN}}}}}}}',
         "options.metadata.m is NaN, which JSON cannot carry"),
        (f'{{"options": {{"tags": ["ok", {SURROGATE}]}}}}',
         "options.tags[1] contains a lone surrogate (U+D800), which cannot be stored"),
        ('{"payload": "{\\"x\\": NaN}", "options": {"payloadType": "application/json"}}',
         "payload.x is NaN, which JSON cannot carry"),
    ],
)
def test_trigger_with_a_value_json_cannot_carry_is_a_400_naming_it(
    api: Any, project: ProjectKeys, raw: str, message: str
) -> None:
    before = counts()
    assert refused(send(api, TRIGGER, raw, project)) == message
    assert counts() == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (f'{{"payload": {{"x": {NAN}}}}}', "payload.x"),
        (f'{{"metadata": {{"m": {OVERFLOW}}}}}', "metadata.m"),
        (f'{{"tags": [{SURROGATE}]}}', "tags[0]"),
    ],
)
def test_replay_with_a_value_json_cannot_carry_is_a_400_naming_it(
    api: Any, project: ProjectKeys, raw: str, field: str
) -> None:
    original = triggers.via_api(api, project)
    before = counts()
    assert refused(send(api, f"/api/v1/runs/{original}/replay", raw, project)).startswith(field)
    assert counts() == before


def test_metadata_and_tags_refuse_what_json_cannot_carry_and_keep_the_run(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h", metadata={"kept": 1})
    metadata = f"/api/v1/runs/{run_id}/metadata"
    for raw, field in [
        (f'{{"metadata": {{"m": {NAN}}}}}', "metadata.m"),
        (f'{{"operations": [{{"type": "set", "key": "k", "value": {INF}}}]}}',
         "operations[0].value"),
        (f'{{"operations": [{{"type": "increment", "key": "k", "value": {OVERFLOW}}}]}}',
         "operations[0].value"),
    ]:
        assert refused(send(api, metadata, raw, project, "PUT")).startswith(field)
    tags = f"/api/v1/runs/{run_id}/tags"
    assert refused(send(api, tags, f'{{"tags": [{SURROGATE}]}}', project)).startswith("tags[0]")

    run = api.get(f"/api/v3/runs/{run_id}", headers=project.headers()).json()
    assert run["metadata"] == {"kept": 1}
    assert run["tags"] == []


def test_batch_items_schedules_and_bulk_refuse_what_json_cannot_carry(
    api: Any, project: ProjectKeys
) -> None:
    before = counts()
    created = api.post("/api/v3/batches", json={"runCount": 1}, headers=project.headers())
    batch_id = created.json()["id"]
    line = f'{{"index": 0, "task": "test-echo", "payload": {{"x": {NAN}}}}}\n'
    items = api.post(f"/api/v3/batches/{batch_id}/items", content=line,
                     headers={**project.headers(), "content-type": "application/x-ndjson"})
    assert refused(items) == "Invalid item at line 1: payload.x is NaN, which JSON cannot carry"

    schedule = f'{{"task": "test-echo", "cron": "0 * * * *", "externalId": {SURROGATE}}}'
    assert refused(send(api, "/api/v1/schedules", schedule, project)).startswith("externalId")

    bulk = f'{{"action": "cancel", "name": {SURROGATE}, "runIds": ["run_x"]}}'
    assert refused(send(api, "/api/v1/bulk-actions", bulk, project)).startswith("name")
    assert counts() == before


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"test": "yes"}, "options.test"),
        ({"maxAttempts": "3"}, "options.maxAttempts"),
        ({"maxAttempts": 2.5}, "options.maxAttempts"),
        ({"maxDuration": "60"}, "options.maxDuration"),
        ({"priority": "5"}, "options.priority"),
        ({"ttl": True}, "options.ttl"),
        ({"idempotencyKey": 7}, "options.idempotencyKey"),
    ],
)
def test_trigger_options_of_the_wrong_type_are_refused_not_coerced(
    api: Any, project: ProjectKeys, options: dict[str, Any], field: str
) -> None:
    before = counts()
    response = api.post(TRIGGER, json={"options": options}, headers=project.headers())
    assert refused(response).startswith(f"{field}:")
    assert counts() == before


def test_a_null_or_non_object_body_creates_no_run(api: Any, project: ProjectKeys) -> None:
    before = counts()
    for raw in ("null", "[]", '"payload"', "3"):
        assert refused(send(api, TRIGGER, raw, project)) == "the request body must be a JSON object"
    assert counts() == before


@pytest.mark.parametrize(
    "queue", ["../../x", "", " ", "a.b", "q\u00e9", "x" * 129, {"name": ""}, {"name": "../x"}, 7],
)
def test_trigger_queue_names_are_validated(api: Any, project: ProjectKeys, queue: Any) -> None:
    before = counts()
    response = api.post(TRIGGER, json={"options": {"queue": queue, "delay": "1h"}},
                        headers=project.headers())
    assert refused(response).startswith("options.queue")
    assert counts() == before


def test_good_queue_names_are_accepted(api: Any, project: ProjectKeys) -> None:
    for queue in ("emails", {"name": "tenant/a_b-1"}):
        response = api.post(TRIGGER, json={"options": {"queue": queue, "delay": "1h"}},
                            headers=project.headers())
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("queue", [{"name": "q"}, "../../x", ""])
def test_replay_queue_is_a_valid_queue_name(api: Any, project: ProjectKeys, queue: Any) -> None:
    original = triggers.via_api(api, project)
    before = counts()
    response = api.post(f"/api/v1/runs/{original}/replay", json={"queue": queue},
                        headers=project.headers())
    assert "queue" in refused(response)
    assert counts() == before


def test_metadata_over_256_kib_is_413_on_trigger_batch_and_replay(
    api: Any, project: ProjectKeys
) -> None:
    big = {"blob": "x" * (256 * 1024 + 1)}
    message = f"Metadata exceeds maximum size of {256 * 1024} bytes"
    original = triggers.via_api(api, project, delay="1h")
    before = counts()

    trigger = api.post(TRIGGER, json={"options": {"metadata": big}}, headers=project.headers())
    assert refused(trigger, 413) == message
    replay = api.post(f"/api/v1/runs/{original}/replay", json={"metadata": big},
                      headers=project.headers())
    assert refused(replay, 413) == message
    batch_id = api.post("/api/v3/batches", json={"runCount": 1},
                        headers=project.headers()).json()["id"]
    line = json.dumps({"index": 0, "task": "test-echo", "options": {"metadata": big}})
    items = api.post(f"/api/v3/batches/{batch_id}/items", content=line + "\n",
                     headers={**project.headers(), "content-type": "application/x-ndjson"})
    assert refused(items, 413) == f"Invalid item at line 1: {message}"
    assert counts() == before


def test_a_schedule_faster_than_the_scheduler_is_refused(api: Any, project: ProjectKeys) -> None:
    response = api.post("/api/v1/schedules", json={"task": "test-echo", "cron": "* * * * * *"},
                        headers=project.headers())
    message = refused(response)
    assert message.startswith("Invalid cron expression '* * * * * *'")
    assert "ticks every 1 s" in message
    assert "sweep" in message


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
def test_a_payload_nested_too_deep_names_the_field_and_the_limit(
    api: Any, project: ProjectKeys, depth: int
) -> None:
    before = counts()
    raw = f'{{"options": {{"delay": "1h"}}, "payload": {nested(depth)}}}'
    assert refused(send(api, TRIGGER, raw, project)) == "payload is nested deeper than 64 levels"
    assert counts() == before


def test_replay_with_an_unknown_field_names_it(api: Any, project: ProjectKeys) -> None:
    original = triggers.via_api(api, project)
    response = api.post(f"/api/v1/runs/{original}/replay", json={"paylod": {"a": 1}},
                        headers=project.headers())
    assert refused(response) == "Invalid request body: paylod: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"delay": 5}', "Invalid request body: delay: Input should be a valid string"),
        ("", "Invalid request body: the request body is missing"),
        ("{}", "Invalid request body: delay: Field required"),
        ("[1]", "Invalid request body: the request body must be a JSON object"),
    ],
)
def test_reschedule_body_errors_name_the_field(
    api: Any, project: ProjectKeys, raw: str, message: str
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    response = send(api, f"/api/v1/runs/{run_id}/reschedule", raw, project)
    assert refused(response) == message
