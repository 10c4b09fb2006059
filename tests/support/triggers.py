"""Triggering runs in tests, one family for every way a test starts a run.

* :func:`post`: the trigger endpoint's raw response, for a test about the endpoint itself
  (a body as sent, refusals, headers);
* :func:`via_api`: over HTTP (a ``TestClient`` or an ``httpx`` client); the new run's id;
* :func:`via_live_server`: the same against a server running in a subprocess;
* :func:`in_db`: through the service in this process, optionally with nothing published
  after commit (the test then plays the worker or the lost message).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer


def post(api: Any, project: ProjectKeys, task: str, body: Any, env: str = "dev",
         **headers: str) -> Any:
    """POST ``body`` to the trigger endpoint (bytes or str as raw text, anything else as
    JSON) with the environment's key; the response, whatever its status."""
    return api.post(
        f"/api/v1/tasks/{task}/trigger",
        content=body if isinstance(body, bytes | str) else json.dumps(body),
        headers=project.headers(env, **{"content-type": "application/json", **headers}),
    )


def via_api(api: Any, project: ProjectKeys, task: str = "test-echo", env: str = "dev",
            payload: Any = None, **options: Any) -> str:
    """Trigger ``task`` over HTTP with ``options`` (wire names); the new run's id."""
    body = {"payload": payload if payload is not None else {"n": 1}, "options": options}
    response = post(api, project, task, body, env)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def via_live_server(server: LiveServer, project: ProjectKeys, task: str = "test-echo",
                    env: str = "dev", payload: Any = None, **options: Any) -> str:
    """:func:`via_api` against a live server (a subprocess)."""
    with httpx.Client(base_url=server.base_url, timeout=15) as client:
        return via_api(client, project, task, env, payload, **options)


def in_db(
    project: ProjectKeys, task: str = "test-echo", env: str = "dev", *, publish: bool = True,
    payload: Any = None, **options: Any,
) -> str:
    """Trigger through the service; with ``publish=False`` nothing is sent after commit."""
    from reprise_server.shared.db import discard_after_commit, transaction
    from reprise_server.shared.projects.service import AuthContext
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run

    auth = AuthContext(project.project_id, project.environment_ids[env], env)
    with transaction() as session:
        result = trigger_run(
            session, auth, task, payload, TriggerOptions.model_validate(options)
        )
        if not publish:
            discard_after_commit(session)
        return result.run.id
