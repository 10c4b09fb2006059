"""Run metadata, tags, result and idempotency-key reset over HTTP (the official SDK drives
the same routes in tests/e2e), and trigger options refused with 400."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, update

from reprise_server.shared.db import transaction
from reprise_server.shared.runs.models import Run
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for_status


def test_parent_and_root_operations_of_a_root_run_change_the_run_itself(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h", metadata={"n": 1})

    response = api.put(f"/api/v1/runs/{run_id}/metadata", headers=project.headers(), json={
        "operations": [{"type": "increment", "key": "n", "value": 1}],
        "parentOperations": [{"type": "set", "key": "parent", "value": True}],
        "rootOperations": [{"type": "append", "key": "roots", "value": "r"}],
    })

    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == {"n": 2, "parent": True, "roots": ["r"]}
    assert run_row(run_id).metadata_ == {"n": 2, "parent": True, "roots": ["r"]}
    got = api.get(f"/api/v1/runs/{run_id}/metadata", headers=project.headers()).json()
    assert got == {"metadata": {"n": 2, "parent": True, "roots": ["r"]},
                   "metadataType": "application/json"}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"operations": [{"type": "explode", "key": "x"}]}, 400, "operations"),
        ({"operations": [{"type": "remove", "key": "n", "value": 1}]}, 400, "not a list"),
        ({"metadata": {"big": "x" * (300 * 1024)}}, 413, "Metadata exceeds maximum size"),
        ({"colour": "red"}, 400, "colour"),
    ],
)
def test_metadata_changes_that_cannot_apply_are_refused_and_write_nothing(
    api: Any, project: ProjectKeys, body: dict[str, Any], status: int, words: str
) -> None:
    run_id = triggers.via_api(api, project, delay="1h", metadata={"n": 1})

    response = api.put(f"/api/v1/runs/{run_id}/metadata", headers=project.headers(), json=body)

    assert response.status_code == status
    assert words in response.json()["error"]
    assert run_row(run_id).metadata_ == {"n": 1}


def test_run_edits_answer_404_for_another_environment_and_401_without_a_key(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    staging = project.headers("staging")

    assert api.get(f"/api/v1/runs/{run_id}/metadata", headers=staging).status_code == 404
    assert api.post(f"/api/v1/runs/{run_id}/tags", headers=staging,
                    json={"tags": ["x"]}).status_code == 404
    assert api.get(f"/api/v1/runs/{run_id}/result", headers=staging).status_code == 404
    assert api.put(f"/api/v1/runs/{run_id}/metadata", json={}).status_code == 401
    assert api.get("/api/v1/runs/nope/result", headers=project.headers()).status_code == 400


def test_result_of_a_failed_run_is_its_error(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.via_api(api, project, "test-fail-until", payload={"succeed_on": 99})
    wait_for_status(run_id, "FAILED")

    result = api.get(f"/api/v1/runs/{run_id}/result", headers=project.headers()).json()

    assert result["ok"] is False
    assert result["error"]["type"] == "BUILT_IN_ERROR"
    assert result["error"]["message"]
    assert result["taskIdentifier"] == "test-fail-until"


@pytest.mark.parametrize(
    ("option", "value"),
    [("region", "eu-central-1"), ("debounce", {"key": "k", "delay": "5s"}),
     ("gates", [{"queue": "q"}]), ("concurrency", {"limit": 1}),
     ("externalDeploymentId", "sha-123"), ("idempotencyKeyTTL", "soon")],
)
def test_options_reprise_cannot_honour_are_400_naming_them(
    api: Any, project: ProjectKeys, option: str, value: Any
) -> None:
    response = api.post("/api/v1/tasks/test-echo/trigger", headers=project.headers(),
                        json={"payload": {}, "options": {option: value, "idempotencyKey": "k"}})

    assert response.status_code == 400
    assert f"options.{option}" in response.json()["error"]


def test_an_idempotency_key_ttl_without_a_key_is_refused(api: Any, project: ProjectKeys) -> None:
    response = api.post("/api/v1/tasks/test-echo/trigger", headers=project.headers(),
                        json={"payload": {}, "options": {"idempotencyKeyTTL": "1h"}})

    assert (response.status_code, response.json()) == (
        400, {"error": "options.idempotencyKeyTTL needs options.idempotencyKey"})


def test_parent_run_id_makes_a_child_run_or_is_refused(api: Any, project: ProjectKeys) -> None:
    parent = triggers.via_api(api, project, delay="1h")

    child = triggers.via_api(api, project, delay="1h", parentRunId=parent)
    refused = api.post("/api/v1/tasks/test-echo/trigger", headers=project.headers(),
                       json={"payload": {}, "options": {"parentRunId": "run_nosuchrun000000000"}})

    row = run_row(child)
    assert (row.parent_run_id, row.root_run_id, row.depth) == (parent, parent, 1)
    assert refused.status_code == 400
    assert "options.parentRunId" in refused.json()["error"]


@pytest.mark.parametrize(
    ("finished_ago", "status"),
    [(timedelta(minutes=59), 200), (timedelta(minutes=61), 422), (timedelta(days=3), 422)],
)
def test_a_finished_runs_metadata_may_change_for_an_hour(
    api: Any, project: ProjectKeys, finished_ago: timedelta, status: int
) -> None:
    """As Trigger.dev's UpdateMetadataService: within an hour of finishing, a flush still
    applies (a task's last flush can land after its run ended); later it is 422."""
    run_id = triggers.via_api(api, project, delay="1h", metadata={"n": 1})
    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(
            status="COMPLETED", finished_at=func.now() - finished_ago))

    response = api.put(f"/api/v1/runs/{run_id}/metadata", headers=project.headers(),
                       json={"operations": [{"type": "increment", "key": "n", "value": 1}]})

    assert response.status_code == status, response.text
    if status == 200:
        assert run_row(run_id).metadata_ == {"n": 2}
    else:
        assert response.json() == {"error": "Cannot update metadata for a completed run: it "
                                            "finished more than 1 hour ago"}
        assert run_row(run_id).metadata_ == {"n": 1}
