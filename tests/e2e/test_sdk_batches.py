"""Batches through the official SDK: tasks.batchTrigger, batch.trigger,
batch.triggerByTask, batch.retrieve and runs.list({ batch }), against a live server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fixtures import ProjectKeys, run_row

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_a_batch_of_100_runs_every_item_once_and_is_listed_by_batch(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("batch.mjs", project.keys["dev"], E2E_BATCH_SIZE="100",
                            E2E_SINGLES="100")

    handle = scenario.ok("batch-trigger")
    assert handle["batchId"].startswith("batch_")
    assert handle["runCount"] == 100
    assert handle["hasPublicAccessToken"]
    # Accept time of the batch against 100 single triggers (shown with -s; not asserted).
    singles = scenario.ok("singles")["elapsedMs"]
    print(f"batch of 100: {handle['elapsedMs']:.0f} ms; 100 single triggers: {singles:.0f} ms")
    retrieved = scenario.ok("retrieve")
    assert retrieved["id"] == handle["batchId"]
    assert retrieved["status"] == "COMPLETED"  # every item has its run
    assert retrieved["runCount"] == 100
    assert len(retrieved["runs"]) == len(set(retrieved["runs"])) == 100
    assert retrieved["createdAtIsDate"]
    assert retrieved["processing"]["errors"] == []
    done = scenario.ok("all-completed")
    assert sorted(done["ids"]) == sorted(retrieved["runs"])
    assert done["batchIds"] == [handle["batchId"]]
    assert len(done["ids"]) == 100  # the singles are no part of the batch
    assert done["triggerFunctions"] == ["batchTrigger"]
    assert done["statuses"] == ["COMPLETED"]
    assert all(name and name.startswith("Hello, n") for name in done["names"])
    assert all(set(meta) == {"index"} for meta in done["metadata"])
    row = run_row(done["ids"][0])
    assert (row.batch_id, row.tags) == (handle["batchId"], ["batch-e2e"])
    # The batch's x-trigger-jwt (read:batch:<id>) reads the batch.
    assert scenario.ok("retrieve-with-public-token")["runs"] == retrieved["runs"]


def test_batch_trigger_by_id_and_by_task_and_an_idempotent_batch(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("batch.mjs", project.keys["dev"], E2E_BATCH_SIZE="1")

    assert scenario.ok("by-id-completed") == ["hello-world", "test-echo"]
    assert scenario.ok("by-task-completed") == ["hello-world", "test-echo"]
    idempotent = scenario.ok("idempotent-batch")
    assert idempotent["first"] == idempotent["second"]
    assert idempotent["runs"] == 1
    partial = scenario.ok("unknown-task-item")
    assert partial["status"] == "PARTIAL_FAILED"
    assert len(partial["runs"]) == 1
    [error] = partial["processing"]["errors"]
    assert (error["index"], error["taskIdentifier"]) == (1, "no-such-task-anywhere")
    assert "no-such-task-anywhere" in error["error"]
