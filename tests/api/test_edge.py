"""The HTTP edge (``api/deps.py``): the request's transaction ends before its response
starts, a wrong key is 401 before any other error, reads authorize before they apply
commands, and request bodies are documented in OpenAPI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from reprise_server.api.app import create_app
from reprise_server.api.deps import DbSession, EdgeRoute
from reprise_server.shared.db import transaction
from reprise_server.shared.runs.models import Run
from tests.support import triggers
from tests.support.commands import ParkedCommands, command_for_target, count, post
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
    original = triggers.via_api(api, project, delay="1h")
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
            400, {"error": "the request body is nested deeper than 64 levels"}), path
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


def _probe_app(fail: bool) -> Any:
    """An app with one sync EdgeRoute that writes a row and waits to publish after commit,
    recording which thread ran the endpoint and which ran the publish, and each
    transaction its session begins."""
    import threading

    from fastapi import APIRouter, FastAPI
    from fastapi.responses import JSONResponse
    from sqlalchemy import event, text

    from reprise_server.shared.db import on_commit

    seen: dict[str, Any] = {}
    router = APIRouter(route_class=EdgeRoute)

    @router.post("/probe/{row_id}")
    def probe(row_id: str, session: DbSession) -> JSONResponse:
        seen["endpoint"] = threading.get_ident()
        begun = seen.setdefault("transactions", [])
        event.listen(session, "after_transaction_create",
                     lambda _, transaction: transaction.parent is None and begun.append(1))
        session.execute(text("INSERT INTO edge_probe (id) VALUES (:id)"), {"id": row_id})
        on_commit(session, lambda: seen.setdefault("published", threading.get_ident()))
        if fail:
            raise RuntimeError("after the write")
        return JSONResponse({"id": row_id})

    app = FastAPI()
    app.include_router(router)
    app.state.seen = seen
    return app


def _probe_rows(row_id: str) -> int:
    from sqlalchemy import text

    with transaction() as session:
        return int(session.execute(
            text("SELECT count(*) FROM edge_probe WHERE id = :id"), {"id": row_id}
        ).scalar_one())


@pytest.fixture
def probe_table() -> Iterator[None]:
    """A table of the test's own, dropped after it (the schema stays the migrations')."""
    from sqlalchemy import text

    with transaction() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS edge_probe (id text PRIMARY KEY)"))
    yield
    with transaction() as session:
        session.execute(text("DROP TABLE edge_probe"))


@pytest.mark.usefixtures("probe_table")
def test_a_sync_route_commits_and_publishes_in_the_thread_it_ran_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One trip to a worker thread per request: the endpoint's thread also commits and
    runs the after-commit callbacks (it was a second trip, for the dependency's exit)."""
    import anyio.to_thread
    from fastapi.testclient import TestClient

    trips: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(func)
        return await run_sync(func, *args, **kwargs)

    app = _probe_app(fail=False)
    with TestClient(app) as client:
        monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
        assert client.post("/probe/ok-1").status_code == 200
        monkeypatch.undo()
    seen = app.state.seen
    assert seen["published"] == seen["endpoint"]
    assert len(trips) == 1, trips
    assert _probe_rows("ok-1") == 1


@pytest.mark.usefixtures("probe_table")
def test_a_sync_route_that_raises_after_writing_keeps_nothing_and_publishes_nothing() -> None:
    from fastapi.testclient import TestClient

    app = _probe_app(fail=True)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/probe/failed-1").status_code == 500
    assert "published" not in app.state.seen
    assert _probe_rows("failed-1") == 0


@pytest.mark.usefixtures("probe_table")
def test_a_sync_route_that_committed_begins_no_second_transaction() -> None:
    """The route's own commit ends the unit: the dependency's exit closes the session
    without beginning (and committing) an empty transaction, a cost on every request."""
    from fastapi.testclient import TestClient

    app = _probe_app(fail=False)
    with TestClient(app) as client:
        assert client.post("/probe/ok-2").status_code == 200
    assert len(app.state.seen["transactions"]) == 1
    assert _probe_rows("ok-2") == 1


def test_the_trigger_route_solves_two_dependencies() -> None:
    """The busiest route keeps FastAPI's dependency tree flat (docs/architecture.md#the-http-edge):
    the session and ``TaskTrigger`` (caller, scopes and body in one), no nested ones."""
    from reprise_server.api.deps import db_session
    from reprise_server.api.routes.tasks import router

    [route] = [r for r in router.routes if isinstance(r, EdgeRoute)
               and r.path == "/api/v1/tasks/{task_id}/trigger"]

    def calls(dependant: Any) -> list[Any]:
        return [c for sub in dependant.dependencies for c in [sub.call, *calls(sub)]]

    solved = calls(route.dependant)
    assert {getattr(call, "__name__", call) for call in solved} == {"_trigger_call", "db_session"}
    assert solved.count(db_session) == 2  # the route's and the dependency's: one, cached
