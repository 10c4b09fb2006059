"""Waitpoint tokens on real workers, completed over HTTP: ``reprise worker`` (prefork, one
slot), ``reprise control`` and ``reprise beat``, and the API as a uvicorn subprocess, all on
a queue prefix of the module's own. A run of ``durable-token`` waits on a token created
through the API; a POST to the token's callback URL (no key) resumes it with the data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from reprise_server.shared.db import transaction
from reprise_server.shared.durable.models import Waitpoint
from tests.support import triggers
from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer, live_api
from tests.support.processes import ReproProcess, run_stack
from tests.workers.test_durable import run_of, wait_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TOKENS = "/api/v1/waitpoints/tokens"


@dataclass
class Stack:
    procs: list[ReproProcess]
    api: LiveServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One prefork worker with one slot, the control process (timers), beat (the sweeps)
    and a live API, serving the module's own queue prefix."""
    schedule = tmp_path_factory.mktemp("beat") / "beat-schedule"
    with run_stack("tokens", schedule) as procs, live_api() as api:
        yield Stack(procs, api)


def _create(stack: Stack, project: ProjectKeys, **body: Any) -> httpx.Response:
    response = httpx.post(stack.api.base_url + TOKENS, json=body, headers=project.headers())
    assert response.status_code == 200, response.text
    return response


def _token_row(token_id: str) -> tuple[str, Any]:
    with transaction() as session:
        token = session.get(Waitpoint, token_id)
        assert token is not None
        return token.status, token.output


def test_a_run_waits_for_a_token_its_callback_url_completes_once(
    project: ProjectKeys, stack: Stack
) -> None:
    token = _create(stack, project, idempotencyKey="approve-order-7", tags=["order:7"]).json()
    run_id = triggers.in_db(project, "durable-token", payload={"token": token["id"]})
    wait_status(run_id, stack.procs, "WAITING")

    done = httpx.post(token["url"], json={"approved": True, "by": "ann"})
    assert (done.status_code, done.json()) == (200, {"success": True})
    run = wait_status(run_id, stack.procs)
    assert run.status.value == "COMPLETED", run.error
    assert run.output == {"data": {"approved": True, "by": "ann"}}

    # a second completion answers success and changes nothing
    again = httpx.post(token["url"], json={"approved": False})
    assert (again.status_code, again.json()) == (200, {"success": True})
    assert _token_row(token["id"]) == ("COMPLETED", {"approved": True, "by": "ann"})
    assert run_of(run_id).output == {"data": {"approved": True, "by": "ann"}}

    # the same idempotency key gives the same (completed) token back, cached; a run that
    # waits on it now continues at once with the first data
    cached = _create(stack, project, idempotencyKey="approve-order-7").json()
    assert (cached["id"], cached["isCached"], cached["url"]) == (token["id"], True, token["url"])
    late = triggers.in_db(project, "durable-token", payload={"token": cached["id"]})
    assert wait_status(late, stack.procs).output == {"data": {"approved": True, "by": "ann"}}

    retrieved = httpx.get(f"{stack.api.base_url}{TOKENS}/{token['id']}",
                          headers=project.headers()).json()
    assert retrieved["status"] == "COMPLETED"


def test_the_x_trigger_jwt_of_the_creation_completes_the_token_and_resumes_the_run(
    project: ProjectKeys, stack: Stack
) -> None:
    created = _create(stack, project)
    token_id = created.json()["id"]
    run_id = triggers.in_db(project, "durable-token", payload={"token": token_id})
    wait_status(run_id, stack.procs, "WAITING")
    jwt = created.headers["x-trigger-jwt"]
    done = httpx.post(f"{stack.api.base_url}{TOKENS}/{token_id}/complete",
                      json={"data": ["ship", 2]}, headers={"Authorization": f"Bearer {jwt}"})
    assert (done.status_code, done.json()) == (200, {"success": True})
    assert wait_status(run_id, stack.procs).output == {"data": ["ship", 2]}


def test_a_token_created_with_a_timeout_times_the_run_out(
    project: ProjectKeys, stack: Stack
) -> None:
    token = _create(stack, project, timeout="1s").json()
    run_id = triggers.in_db(project, "durable-token", payload={"token": token["id"]})
    assert wait_status(run_id, stack.procs).output == {"timedOut": True}
    assert _token_row(token["id"])[0] == "TIMED_OUT"
    late = httpx.post(token["url"], json={"approved": True})
    assert (late.status_code, late.json()) == (200, {"success": True})
    assert _token_row(token["id"])[0] == "TIMED_OUT"
