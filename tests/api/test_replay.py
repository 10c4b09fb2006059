"""``POST /api/v1/runs/{runId}/replay`` and the command it records."""

from __future__ import annotations

from typing import Any

import pytest

from reprise_server.shared.db import transaction
from reprise_server.shared.versions import repository as versions_repo
from tests.support import triggers
from tests.support.commands import (
    ParkedCommands,
    command_for_target,
    count,
    post,
)
from tests.support.fixtures import ProjectKeys, run_row, wait_for_status


def _replay(api: Any, project: ProjectKeys, run_id: str, body: Any = None,
            env: str = "dev") -> Any:
    if body is None:
        return api.post(f"/api/v1/runs/{run_id}/replay", headers=project.headers(env))
    return api.post(f"/api/v1/runs/{run_id}/replay", json=body, headers=project.headers(env))


def test_replay_executes_to_completed_with_lineage(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    original = triggers.via_api(api, project, payload={"hello": "world"}, tags=["b", "a"],
                       metadata={"m": 1}, maxAttempts=2, priority=5, queue="q1")
    wait_for_status(original, "COMPLETED")

    response = _replay(api, project, original)

    assert response.status_code == 200, response.text
    new_id = response.json()["id"]
    assert new_id.startswith("run_")
    assert new_id != original
    assert response.headers["x-trigger-jwt"]
    wait_for_status(new_id, "COMPLETED")
    body = api.get(f"/api/v3/runs/{new_id}", headers=project.headers()).json()
    assert body["output"] == {"payload": {"hello": "world"}, "attempt": 1, "isReplay": True}
    assert body["replayedFrom"] == original
    assert body["lineageDepth"] == 1
    assert body["tags"] == ["a", "b"]
    assert body["metadata"] == {"m": 1}
    assert "idempotencyKey" not in body
    row = run_row(new_id)
    assert (row.max_attempts, row.priority, row.queue) == (2, 5, "q1")

    again = _replay(api, project, new_id).json()["id"]
    wait_for_status(again, "COMPLETED")
    assert run_row(again).lineage_depth == 2
    assert run_row(again).replayed_from == new_id


def test_replay_is_retrievable_at_once_without_a_worker(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = triggers.via_api(api, project, delay="1h", payload={"x": 1})

    new_id = _replay(api, project, original).json()["id"]
    # No worker consumes the message (it is parked in Redis): the read applies it.
    command = command_for_target(new_id)
    assert parked_commands.command_ids() == [command.id]
    assert command.status == "PENDING"

    response = api.get(f"/api/v3/runs/{new_id}", headers=project.headers())

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "QUEUED"  # the delay is not copied
    assert body["payload"] == {"x": 1}
    assert body["replayedFrom"] == original
    applied = command_for_target(new_id)
    assert applied.status == "APPLIED"
    assert applied.applied_by.startswith("api:")
    detail = api.get(f"/api/v1/commands/{command.id}", headers=project.headers()).json()
    assert detail["status"] == "APPLIED"
    assert detail["kind"] == "replay"
    assert detail["result"] == {"runId": new_id, "status": "QUEUED"}
    assert detail["targetRunId"] == new_id
    assert None not in detail.values()


def test_list_shows_an_accepted_replay_before_a_worker_applied_it(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = triggers.via_api(api, project, delay="1h")
    new_id = _replay(api, project, original).json()["id"]

    listed = api.get("/api/v1/runs", headers=project.headers()).json()["data"]

    assert [r["id"] for r in listed][:2] == [new_id, original]


def test_replay_overrides(api: Any, project: ProjectKeys,
                          parked_commands: ParkedCommands) -> None:
    original = triggers.via_api(api, project, payload={"a": 1}, tags=["old"], metadata={"o": 1})
    body = {"payload": {"b": 2}, "tags": ["new", "x"], "metadata": {"n": 2}, "delay": "2h",
            "ttl": "30m", "maxAttempts": 7, "priority": 9, "queue": "fast"}

    new_id = _replay(api, project, original, body).json()["id"]

    run = api.get(f"/api/v3/runs/{new_id}", headers=project.headers()).json()
    assert run["status"] == "DELAYED"
    assert run["payload"] == {"b": 2}
    assert run["tags"] == ["new", "x"]
    assert run["metadata"] == {"n": 2}
    assert run["ttl"] == "30m"
    assert "delayedUntil" in run
    row = run_row(new_id)
    assert (row.max_attempts, row.priority, row.queue) == (7, 9, "fast")


def test_replay_into_another_environment_of_the_project(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = triggers.via_api(api, project)

    new_id = _replay(api, project, original, {"environment": "staging"}).json()["id"]

    assert api.get(f"/api/v3/runs/{new_id}", headers=project.headers("dev")).status_code == 404
    staged = api.get(f"/api/v3/runs/{new_id}", headers=project.headers("staging"))
    assert staged.status_code == 200
    assert run_row(new_id).environment_id == project.environment_ids["staging"]
    by_id = {"environment": project.environment_ids["prod"]}
    prod_id = _replay(api, project, original, by_id).json()["id"]
    assert api.get(f"/api/v3/runs/{prod_id}", headers=project.headers("prod")).status_code == 200


def test_replay_waits_for_a_version_that_has_the_task(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    from reprise.registry import REGISTRY
    from reprise_server.shared.settings import get_settings
    from reprise_server.workers.runtime import register_version

    original = triggers.via_api(api, project)
    wait_for_status(original, "COMPLETED")
    with transaction() as session:  # a newer version without the task becomes current
        versions_repo.upsert_worker_version(
            session, project.environment_ids["dev"], "20261122.99", [("test-block", {})]
        )

    new_id = _replay(api, project, original).json()["id"]

    pending = api.get(f"/api/v3/runs/{new_id}", headers={
        **project.headers(), "x-trigger-api-version": "2025-07-16"}).json()
    assert pending["status"] == "PENDING_VERSION"
    register_version(REGISTRY, get_settings().worker_version, ["dev"], project.project_id)
    wait_for_status(new_id, "COMPLETED")


@pytest.mark.parametrize(
    ("headers", "error"),
    [({}, "Invalid or Missing API key"),
     ({"Authorization": "Bearer tr_dev_nope"}, "Invalid or Missing API key")],
)
def test_replay_without_a_valid_key_is_401(
    api: Any, project: ProjectKeys, headers: dict[str, str], error: str
) -> None:
    original = triggers.via_api(api, project)
    before = count("commands")
    response = api.post(f"/api/v1/runs/{original}/replay", headers=headers)
    assert (response.status_code, response.json()) == (401, {"error": error})
    assert count("commands") == before


def test_replay_errors_write_nothing(api: Any, project: ProjectKeys) -> None:
    original = triggers.via_api(api, project)
    foreign = triggers.via_api(api, project, env="staging")
    cases = [
        ("not-a-run", None, 400, "Invalid or missing run ID"),
        ("run_doesnotexist00000000", None, 404, "Run not found"),
        (foreign, None, 404, "Run not found"),
        (original, "not json", 400,
         "Invalid request body: not JSON: Expecting value: line 1 column 1 (char 0)"),
        (original, [1, 2], 400, "Invalid request body: the request body must be a JSON object"),
        (original, {"maxAttempts": "many"}, 400,
         "Invalid request body: maxAttempts: Input should be a valid integer"),
        (original, {"tags": ["x" * 129]}, 400,
         "Invalid request body: tags: each tag must be a string of at most 128 characters"),
        (original, {"colour": "red"}, 400,
         "Invalid request body: colour: Extra inputs are not permitted"),
        (original, {"region": "eu-central-1"}, 400, ("Invalid request body: region: region is not "
         "supported: Reprise runs every task in one region (got 'eu-central-1')")),
        (original, {"version": "19990101.1"}, 400, ("Failed to create new run: version: Task "
         "locked to version '19990101.1', but no worker found with that version.")),
        (original, {"idempotencyKeyTTL": "1h"}, 400,
         "Failed to create new run: idempotencyKeyTTL: needs an idempotencyKey"),
        (original, {"ttl": "forever"}, 400, "Failed to create new run: ttl: not a duration: 'forever'"),
        (original, {"delay": "whenever"}, 400, "Failed to create new run: delay: not a date: 'whenever'"),
        (original, {"environment": "nope"}, 404, "Environment not found"),
        (original, {"fromStep": "charge"}, 400,
         f"Failed to create new run: fromStep: run {original} recorded no step 'charge'"),
        (original, {"fromStep": "3"}, 400,
         f"Failed to create new run: fromStep: run {original} has 0 recorded steps"),
        (original, {"fromStep": "1", "fromCheckpoint": 1}, 404,
         f"Checkpoint 1 not found for run {original}"),
        (original, {"fromCheckpoint": "1"}, 400,
         "Invalid request body: fromCheckpoint: Input should be a valid integer"),
    ]
    runs, commands = count("runs"), count("commands")
    for run_id, body, status, error in cases:
        response = post(api, f"/api/v1/runs/{run_id}/replay", body, project.headers())
        assert (response.status_code, response.json()) == (status, {"error": error}), run_id
    assert (count("runs"), count("commands")) == (runs, commands)


def test_replay_of_a_task_no_version_has_fails_and_writes_nothing(
    api: Any, project: ProjectKeys
) -> None:
    original = triggers.via_api(api, project)
    with transaction() as session:  # every version of the project forgets the task
        for env_id in project.environment_ids.values():
            versions_repo.upsert_worker_version(
                session, env_id, "20261122.1", [("test-block", {})]
            )
    commands = count("commands")

    response = _replay(api, project, original)

    assert (response.status_code, response.json()) == (
        400, {"error": "Failed to create new run"})
    assert count("commands") == commands


def test_run_history_lists_its_commands(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = triggers.via_api(api, project, delay="1h")
    new_id = _replay(api, project, original).json()["id"]
    api.post(f"/api/v1/runs/{original}/reschedule", json={"delay": "2h"},
             headers=project.headers())

    history = api.get(f"/api/v1/runs/{original}/commands", headers=project.headers()).json()

    kinds = [(c["kind"], c["status"]) for c in history["data"]]
    assert kinds == [("replay", "PENDING"), ("reschedule", "APPLIED")]
    assert history["data"][0]["targetRunId"] == new_id
    other_env = api.get(f"/api/v1/runs/{original}/commands", headers=project.headers("prod"))
    assert other_env.status_code == 404
    unknown = api.get("/api/v1/commands/cmd_nope", headers=project.headers())
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Command not found"})


def test_a_retried_replay_with_the_same_request_key_creates_one_run(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = triggers.via_api(api, project, delay="1h")
    retry = {**project.headers(), "x-trigger-request-idempotency-key": "3b1f0c1e-retry"}
    first = api.post(f"/api/v1/runs/{original}/replay", headers=retry)
    second = api.post(f"/api/v1/runs/{original}/replay", headers=retry)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert len(parked_commands.command_ids()) == 1
    # Another request (another key) is another replay.
    other = _replay(api, project, original).json()["id"]
    assert other != first.json()["id"]


def test_a_replay_command_shows_the_overrides_as_sent_and_not_the_plan(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    original = triggers.via_api(api, project, payload={"x": 1})
    sent = {"payload": {"x": 2}, "delay": "1h", "maxAttempts": 2, "tags": ["b", "a"]}
    new_id = api.post(f"/api/v1/runs/{original}/replay", json=sent,
                      headers=project.headers()).json()["id"]
    command = command_for_target(new_id)

    detail = api.get(f"/api/v1/commands/{command.id}", headers=project.headers()).json()

    assert detail["arguments"] == {"overrides": sent}
    assert "plan" in command.arguments  # what apply reads stays in the row
