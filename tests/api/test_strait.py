"""Strait-compatible routes: replay from a checkpoint, retrieve, checkpoints."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from tests.support import triggers
from tests.support.commands import count
from tests.support.fixtures import ProjectKeys, run_row, wait_for_status

JOB_RUN_REQUIRED = {"attempt", "created_at", "debug_mode", "id", "job_id", "job_version",
                    "lineage_depth", "priority", "project_id", "status", "triggered_by"}


def problem(status: int, message: str) -> dict[str, Any]:
    """Reprise's {error} with Strait's RFC 9457 problem fields (huma's error model)."""
    return {"error": message, "title": HTTPStatus(status).phrase, "status": status,
            "detail": message}


def test_checkpoints_are_listed_and_replay_starts_from_one(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    original = triggers.via_api(api, project, "test-checkpoints", payload={"count": 3, "tag": "t"})
    wait_for_status(original, "COMPLETED")

    listed = api.get(f"/v1/runs/{original}/checkpoints", headers=project.headers())

    assert listed.status_code == 200, listed.text
    checkpoints = listed.json()
    assert [c["number"] for c in checkpoints] == [1, 2, 3]
    assert checkpoints[1]["state"] == {"step": 2, "payload": {"count": 3, "tag": "t"}}
    assert checkpoints[1]["run_id"] == original

    response = api.post(f"/v1/runs/{original}/replay?from_checkpoint=2",
                        headers=project.headers())

    assert response.status_code == 200, response.text
    job_run = response.json()
    assert JOB_RUN_REQUIRED <= job_run.keys()
    assert None not in job_run.values()
    assert job_run["debug_mode"] is True
    assert job_run["payload"] == {"step": 2, "payload": {"count": 3, "tag": "t"}}
    assert job_run["lineage_depth"] == 1
    assert job_run["continuation_of"] == original
    assert job_run["job_id"] == "test-checkpoints"
    assert job_run["status"] == "queued"
    assert job_run["triggered_by"] == "manual"  # Strait's replay is TriggerManual
    wait_for_status(job_run["id"], "COMPLETED")


def test_strait_retrieve_shows_the_job_run(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.via_api(api, project, payload={"p": 1}, tags=["user:42", "vip"])
    wait_for_status(run_id, "COMPLETED")

    response = api.get(f"/v1/runs/{run_id}", headers=project.headers())

    assert response.status_code == 200, response.text
    job_run = response.json()
    assert JOB_RUN_REQUIRED <= job_run.keys()
    assert None not in job_run.values()
    assert job_run["status"] == "completed"
    assert job_run["job_version"] >= 1
    assert isinstance(job_run["job_version"], int)
    assert job_run["attempt"] == 1
    assert job_run["result"] == {"payload": {"p": 1}, "attempt": 1, "isReplay": False}
    assert job_run["tags"] == {"user": "42", "vip": ""}
    assert job_run["debug_mode"] is False
    assert {"queue_wait_ms", "total_ms"} <= job_run["execution_trace"].keys()


def test_plain_strait_replay_copies_the_payload(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    original = triggers.via_api(api, project, delay="1h", payload={"k": "v"})

    job_run = api.post(f"/v1/runs/{original}/replay", headers=project.headers()).json()

    assert job_run["payload"] == {"k": "v"}
    assert job_run["debug_mode"] is False
    assert job_run["job_version"] >= 1  # the current version, which it will run on
    assert job_run["attempt"] == 1  # as Strait creates a run
    assert job_run["triggered_by"] == "manual"
    assert run_row(job_run["id"]).replayed_from == original
    wait_for_status(job_run["id"], "COMPLETED")
    again = api.get(f"/v1/runs/{job_run['id']}", headers=project.headers()).json()
    assert again["id"] == job_run["id"]
    assert again["job_version"] == job_run["job_version"]  # it ran on the version announced


def test_strait_errors_write_nothing(api: Any, project: ProjectKeys) -> None:
    original = triggers.via_api(api, project, delay="1h")
    runs, commands = count("runs"), count("commands")
    cases = [
        (f"/v1/runs/{original}/replay?from_checkpoint=9", 404,
         f"Checkpoint 9 not found for run {original}"),
        (f"/v1/runs/{original}/replay?from_checkpoint=two", 400,
         "from_checkpoint must be a positive integer"),
        (f"/v1/runs/{original}/replay?from_checkpoint=0", 400,
         "from_checkpoint must be a positive integer"),
        ("/v1/runs/nope/replay", 400, "Invalid or missing run ID"),
        ("/v1/runs/run_doesnotexist00000000/replay", 404, "Run not found"),
    ]
    for url, status, error in cases:
        response = api.post(url, headers=project.headers())
        assert (response.status_code, response.json()) == (status, problem(status, error)), url
    foreign = api.get(f"/v1/runs/{original}", headers=project.headers("staging"))
    assert (foreign.status_code, foreign.json()) == (404, problem(404, "Run not found"))
    no_key = api.get(f"/v1/runs/{original}/checkpoints")
    assert (no_key.status_code, no_key.json()) == (
        401, problem(401, "Invalid or Missing API key"))
    assert (count("runs"), count("commands")) == (runs, commands)
