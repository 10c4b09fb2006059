"""lockToVersion (the SDK's ``version``): refused when it names no registered version or
one without the task; otherwise only that version's workers execute the run."""

from __future__ import annotations

from typing import Any

from reprise_server.shared.db import transaction
from reprise_server.shared.settings import get_settings
from reprise_server.shared.versions.service import register_worker_version
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for, wait_for_status

OLD = "20200101.1"


def locked_to(version: str) -> dict[str, Any]:
    return {"payload": {"n": 1}, "options": {"lockToVersion": version}}


def register_old_version(project: ProjectKeys) -> None:
    """An older version with only test-echo, then the test worker's version again (current)."""
    with transaction() as session:
        register_worker_version(session, OLD, {"test-echo": {}}, ["dev"], project.project_id)
    with transaction() as session:
        register_worker_version(session, get_settings().worker_version,
                                {"test-echo": {}, "test-checkpoints": {}}, ["dev"], project.project_id)


def test_unknown_version_or_task_missing_from_it_is_400_naming_it(
    api: Any, project: ProjectKeys
) -> None:
    register_old_version(project)

    unknown = triggers.post(api, project, "test-echo", locked_to("19990101.9"))
    assert unknown.status_code == 400
    assert unknown.json()["error"] == (
        "Task locked to version '19990101.9', but no worker found with that version.")
    missing = triggers.post(api, project, "test-checkpoints", locked_to(OLD))
    assert missing.status_code == 400
    assert missing.json()["error"] == f"Task 'test-checkpoints' not found on locked version '{OLD}'."


def test_a_run_locked_to_another_version_is_not_executed_by_this_worker(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    register_old_version(project)
    response = triggers.post(api, project, "test-echo", locked_to(OLD))
    assert response.status_code == 200, response.text
    run_id = response.json()["id"]

    def handed_back() -> Any:
        # The worker (another version) claimed it (dequeued_at is set by the claim) and
        # gave it back to the queue.
        row = run_row(run_id)
        return row if row.dequeued_at is not None and row.status == "QUEUED" else None

    row = wait_for(handed_back, timeout=20, what="the worker to hand the locked run back")
    assert (row.attempt_count, row.locked_version) == (0, OLD)
    api.post(f"/api/v2/runs/{run_id}/cancel", headers=project.headers())
    wait_for_status(run_id, "CANCELED")
    current_version = locked_to(get_settings().worker_version)
    current = triggers.post(api, project, "test-echo", current_version).json()["id"]
    assert wait_for_status(current, "COMPLETED").version == get_settings().worker_version
