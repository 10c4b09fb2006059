from __future__ import annotations

from typing import Any

from tests.support.fixtures import ProjectKeys, wait_for_status


def test_trigger_executes_on_worker_and_retrieve_shows_output(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    response = api.post(
        "/api/v1/tasks/test-echo/trigger",
        json={"payload": {"hello": "world"}},
        headers=project.headers(),
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["id"]
    assert response.headers["x-trigger-jwt"]
    wait_for_status(run_id, "COMPLETED")
    body = api.get(f"/api/v3/runs/{run_id}", headers=project.headers()).json()
    assert body["status"] == "COMPLETED"
    assert body["output"] == {"payload": {"hello": "world"}, "attempt": 1, "isReplay": False}
    assert len(body["attempts"]) == 1
    assert body["attempts"][0]["status"] == "COMPLETED"
    assert None not in body.values()
