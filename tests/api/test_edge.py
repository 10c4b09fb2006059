"""The HTTP edge (``api/deps.py``): the request's transaction ends before its response
starts, a wrong key is 401 before any other error, reads authorize before they apply
commands, and request bodies are documented in OpenAPI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from api.app import create_app
from shared.db import transaction
from shared.runs.models import Run
from tests.support.commands import ParkedCommands, command_for_target, count, post, trigger_via_api
from tests.support.fixtures import ProjectKeys


def _asgi_post(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """POST through the ASGI app; returns the status and what another connection saw of
    the runs table the moment the response started."""
    seen: dict[str, Any] = {}
    raw = json.dumps(body).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
            with transaction() as session:  # another connection, outside the request's
                seen["runs"] = session.execute(select(func.count()).select_from(Run)).scalar()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("test", 80), "client": ("test", 1),
        "headers": [(k.lower().encode(), v.encode()) for k, v in
                    {**headers, "content-type": "application/json"}.items()],
    }  # fmt: skip
    asyncio.run(create_app()(scope, receive, send))
    return seen


def test_the_transaction_is_committed_before_the_response_starts(project: ProjectKeys) -> None:
    seen = _asgi_post("/api/v1/tasks/test-echo/trigger", {"payload": {"n": 1}},
                      project.headers())

    assert seen == {"status": 200, "runs": 1}


def test_a_public_token_reads_but_never_writes(api: Any, project: ProjectKeys) -> None:
    response = api.post("/api/v1/tasks/test-echo/trigger", json={"options": {"delay": "1h"}},
                        headers=project.headers())
    run_id, token = response.json()["id"], response.headers["x-trigger-jwt"]
    public = {"Authorization": f"Bearer {token}"}

    assert api.get(f"/api/v3/runs/{run_id}", headers=public).status_code == 200
    for path, body in [(f"/api/v1/runs/{run_id}/replay", None),
                       (f"/api/v1/runs/{run_id}/reschedule", {"delay": "2h"}),
                       (f"/api/v1/runs/{run_id}/reschedule", {"delay": 5}),
                       ("/api/v1/runs/not-a-run/replay", None),
                       (f"/api/v2/runs/{run_id}/cancel", None)]:
        denied = post(api, path, body, public)
        assert (denied.status_code, denied.json()) == (
            401, {"error": "Invalid or Missing API key"}), path
    assert count("commands") == 0


@pytest.mark.parametrize(
    "params", [{"filter[status]": "BOGUS"}, {"page[size]": "0"}, {"page[after]": "nope"}]
)
def test_a_wrong_key_is_401_before_a_bad_list_query(api: Any, params: dict[str, str]) -> None:
    response = api.get("/api/v1/runs", params=params,
                       headers={"Authorization": "Bearer tr_dev_wrongwrongwrong"})
    assert (response.status_code, response.json()) == (401, {"error": "Invalid or Missing API key"})


def test_a_wrong_key_is_401_before_a_bad_trigger_body(api: Any) -> None:
    response = post(api, "/api/v1/tasks/test-echo/trigger", "[1, 2]",
                    {"Authorization": "Bearer tr_dev_wrongwrongwrong"})
    assert (response.status_code, response.json()) == (401, {"error": "Invalid or Missing API key"})


def test_a_read_from_another_environment_applies_nothing(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = trigger_via_api(api, project, delay="1h")
    new_id = api.post(f"/api/v1/runs/{original}/replay", headers=project.headers()).json()["id"]

    for env in ("staging", "prod"):
        foreign = api.get(f"/api/v3/runs/{new_id}", headers=project.headers(env))
        assert (foreign.status_code, foreign.json()) == (404, {"error": "Run not found"})
        assert api.get("/api/v1/runs", headers=project.headers(env)).json()["data"] == []

    assert command_for_target(new_id).status == "PENDING"
    assert api.get(f"/api/v3/runs/{new_id}", headers=project.headers()).status_code == 200
    assert command_for_target(new_id).status == "APPLIED"


def test_deeply_nested_json_is_a_clear_400(api: Any, project: ProjectKeys) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/api/v1/tasks/test-echo/trigger", "/api/v1/runs/run_doesnotexist00000000/replay"):
        response = post(api, path, deep, project.headers())
        assert (response.status_code, response.json()) == (
            400, {"error": "Invalid request body"}), path
    with transaction() as session:
        assert session.execute(select(func.count()).select_from(Run)).scalar() == 0


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_request_bodies_are_documented_from_their_models(api: Any) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]

    def body(path: str) -> dict[str, Any]:
        return dict(paths[path]["post"]["requestBody"])

    replay = body("/api/v1/runs/{run_id}/replay")
    assert replay["required"] is False
    assert "maxAttempts" in replay["content"]["application/json"]["schema"]["properties"]
    reschedule = body("/api/v1/runs/{run_id}/reschedule")
    assert reschedule["required"] is True
    schema = reschedule["content"]["application/json"]["schema"]
    assert (schema["required"], schema["properties"]["delay"]["type"]) == (["delay"], "string")
    trigger_schema = body("/api/v1/tasks/{task_id}/trigger")["content"]["application/json"]
    assert "options" in trigger_schema["schema"]["properties"]
    listed = {p["name"] for p in paths["/api/v1/runs"]["get"]["parameters"]}
    assert {"filter[status]", "filter[createdAt][period]", "page[size]", "page[after]"} <= listed
    components = spec.get("components", {}).get("schemas", {})
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in components, ref
