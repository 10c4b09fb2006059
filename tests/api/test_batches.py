"""The batch routes at the API: the item stream's idempotency, its errors, and who may
read or fill a batch (the SDK-level tests are in tests/e2e/test_sdk_batches.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from reprise_server.shared.db import transaction
from reprise_server.shared.projects.tokens import JWT_AUDIENCE, JWT_ISSUER
from reprise_server.shared.runs.models import Run
from tests.support.fixtures import ProjectKeys

NDJSON = {"content-type": "application/x-ndjson"}


def create(api: Any, project: ProjectKeys, count: int, headers: dict[str, str] | None = None,
           **body: Any) -> Any:
    return api.post("/api/v3/batches", json={"runCount": count, **body},
                    headers=headers or project.headers())


def items(*lines: dict[str, Any]) -> str:
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def item(index: int, task: str = "test-echo", **options: Any) -> dict[str, Any]:
    return {"index": index, "task": task, "payload": json.dumps({"i": index}),
            "options": {"payloadType": "application/json", "delay": "1h", **options}}


def stream(api: Any, project: ProjectKeys, batch_id: str, body: str,
           headers: dict[str, str] | None = None) -> Any:
    return api.post(f"/api/v3/batches/{batch_id}/items", content=body,
                    headers={**(headers or project.headers()), **NDJSON})


def runs_of(batch_id: str) -> int:
    with transaction() as session:
        return int(session.scalar(select(func.count()).where(Run.batch_id == batch_id)) or 0)


def test_a_retried_item_stream_creates_no_run_twice(api: Any, project: ProjectKeys) -> None:
    created = create(api, project, 3)
    assert created.status_code == 202
    batch_id = created.json()["id"]
    assert created.json() == {"id": batch_id, "runCount": 3, "isCached": False}
    partial = stream(api, project, batch_id, items(item(0), item(1)))
    assert partial.json() == {"id": batch_id, "itemsAccepted": 2, "itemsDeduplicated": 0,
                              "sealed": False, "enqueuedCount": 2, "expectedCount": 3}
    retried = stream(api, project, batch_id, items(item(0), item(1), item(2)))
    assert retried.json() == {"id": batch_id, "itemsAccepted": 1, "itemsDeduplicated": 2,
                              "sealed": True}
    assert runs_of(batch_id) == 3
    again = stream(api, project, batch_id, items(item(0), item(1), item(2)))
    assert (again.json()["itemsAccepted"], again.json()["itemsDeduplicated"]) == (0, 3)
    batch = api.get(f"/api/v2/batches/{batch_id}", headers=project.headers()).json()
    assert batch["status"] == "COMPLETED"
    assert [i["status"] for i in batch["items"]] == ["DELAYED"] * 3
    assert batch["runs"] == [i["runId"] for i in batch["items"]]
    listed = api.get(f"/api/v1/runs?filter[batch]={batch_id}", headers=project.headers())
    assert sorted(r["id"] for r in listed.json()["data"]) == sorted(batch["runs"])
    nothing = api.get("/api/v1/runs?filter[batch]=batch_none", headers=project.headers())
    assert nothing.json()["data"] == []


def test_a_batch_idempotency_key_or_a_retried_create_is_the_same_batch(
    api: Any, project: ProjectKeys
) -> None:
    first = create(api, project, 1, idempotencyKey="a" * 64,
                   idempotencyKeyOptions={"key": "nightly", "scope": "global"})
    second = create(api, project, 1, idempotencyKey="a" * 64)
    assert second.json()["id"] == first.json()["id"]
    assert (second.json()["isCached"], second.json()["idempotencyKey"]) == (True, "nightly")
    headers = project.headers(**{"x-trigger-request-idempotency-key": "req-1"})
    retried = [create(api, project, 2, headers=headers).json() for _ in range(2)]
    assert retried[0]["id"] == retried[1]["id"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (items(item(5)), 400, "index 5 is out of range"),
        ("{not json\n", 400, "Invalid JSON at line 2"),
        (items({"index": 0}), 400, "Invalid item at line 2: task"),
        (items({**item(0), "stray": 1}), 400, "stray"),
        (items(item(1, dealy="1h")), 400, "unknown option 'dealy'"),
    ],
)
def test_bad_item_streams_are_400_and_write_nothing(
    api: Any, project: ProjectKeys, body: str, status: int, needle: str
) -> None:
    batch_id = create(api, project, 2).json()["id"]
    response = stream(api, project, batch_id, items(item(0)) + body)
    assert response.status_code == status
    assert needle in response.json()["error"]
    assert runs_of(batch_id) == 0


def test_the_item_stream_wants_ndjson_and_a_known_batch(api: Any, project: ProjectKeys) -> None:
    batch_id = create(api, project, 1).json()["id"]
    wrong_type = api.post(f"/api/v3/batches/{batch_id}/items", content=items(item(0)),
                          headers={**project.headers(), "content-type": "application/json"})
    assert wrong_type.status_code == 415
    other_env = stream(api, project, batch_id, items(item(0)), headers=project.headers("prod"))
    assert (other_env.status_code, other_env.json()) == (404, {"error": "Batch not found"})
    assert api.get(f"/api/v2/batches/{batch_id}", headers=project.headers("prod")).status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [({"runCount": 0}, "runCount"), ({"runCount": 1001}, "runCount"),
     ({"runCount": 1, "resumeParentOnCompletion": True}, "batchTriggerAndWait"),
     ({"runCount": 1, "unknown": 1}, "unknown")],
)
def test_bad_creates_are_400(api: Any, project: ProjectKeys, body: dict[str, Any],
                             needle: str) -> None:
    response = api.post("/api/v3/batches", json=body, headers=project.headers())
    assert response.status_code == 400
    assert needle in response.json()["error"]


def _token(project: ProjectKeys, scopes: list[str]) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, "exp": now + 60,
              "sub": project.environment_ids["dev"], "pub": True, "scopes": scopes}
    return {"Authorization": f"Bearer {jwt.encode(claims, project.keys['dev'], 'HS256')}"}


def test_public_tokens_fill_batches_of_their_tasks_and_read_their_batch_only(
    api: Any, project: ProjectKeys
) -> None:
    token = _token(project, ["batchTrigger:tasks:test-echo"])
    undeclared = create(api, project, 1, headers=token)
    assert undeclared.status_code == 403
    created = create(api, project, 2, headers=token, taskIdentifiers=["test-echo"])
    assert created.status_code == 202
    batch_id = created.json()["id"]
    refused = stream(api, project, batch_id, items(item(0), item(1, task="hello-world")),
                     headers=token)
    assert refused.status_code == 403
    assert runs_of(batch_id) == 0
    # A token that may batch-trigger more tasks still fills a batch with its declared ones.
    wider = _token(project, ["batchTrigger:tasks:test-echo", "batchTrigger:tasks:hello-world"])
    outside = stream(api, project, batch_id, items(item(0, task="hello-world")), headers=wider)
    assert outside.status_code == 403
    assert "not one of this batch's taskIdentifiers" in outside.json()["error"]
    assert runs_of(batch_id) == 0
    assert stream(api, project, batch_id, items(item(0), item(1)), headers=token).json()["sealed"]
    reader = {"Authorization": f"Bearer {created.headers['x-trigger-jwt']}"}
    assert api.get(f"/api/v2/batches/{batch_id}", headers=reader).status_code == 200
    other = create(api, project, 1).json()["id"]
    assert api.get(f"/api/v2/batches/{other}", headers=reader).status_code == 404


def test_items_are_triggered_with_every_option_of_a_single_trigger(
    api: Any, project: ProjectKeys
) -> None:
    options = {"idempotencyKey": "b" * 64, "idempotencyKeyOptions": {"key": "once"},
               "tags": ["x", "y"], "ttl": "5m", "maxAttempts": 2, "queue": {"name": "q1"},
               "metadata": {"m": 1}}
    first = create(api, project, 1).json()["id"]
    stream(api, project, first, items(item(0, **options)))
    second = create(api, project, 1).json()["id"]
    stream(api, project, second, items(item(0, **options)))
    [run_a] = api.get(f"/api/v2/batches/{first}", headers=project.headers()).json()["runs"]
    [run_b] = api.get(f"/api/v2/batches/{second}", headers=project.headers()).json()["runs"]
    assert run_a == run_b  # the item's idempotency key found the first batch's run
    run = api.get(f"/api/v3/runs/{run_a}", headers=project.headers()).json()
    assert (run["tags"], run["ttl"], run["metadata"], run["idempotencyKey"]) == (
        ["x", "y"], "5m", {"m": 1}, "once"
    )
    assert (run["status"], run["batchId"], run["triggerFunction"]) == (
        "DELAYED", first, "batchTrigger"
    )
    with transaction() as session:
        row = session.get(Run, run_a)
        assert row is not None
        assert (row.queue, row.max_attempts) == ("q1", 2)
