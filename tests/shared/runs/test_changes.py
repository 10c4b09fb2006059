"""Structured logs of run state changes: one line per change, with ids, never payloads."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from reprise_server.shared.logs import JsonFormatter, log_context
from tests.support import triggers
from tests.support.commands import backdate_delay
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status

SECRET = "payload-marker-7c1f"


def _lines(caplog: pytest.LogCaptureFixture, run_id: str) -> list[dict[str, Any]]:
    formatter = JsonFormatter("test")
    lines = []
    for record in caplog.records:
        if record.name != "reprise.runs":
            continue
        line = json.loads(formatter.format(record))
        if line.get("run_id") == run_id or run_id in line.get("run_ids", []):
            lines.append(line)
    return lines


def test_a_run_logs_each_state_change_with_its_ids_and_no_payload(
    caplog: pytest.LogCaptureFixture, api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    caplog.set_level(logging.INFO, logger="reprise.runs")
    run_id = triggers.via_api(api, project, task="test-echo", payload={"secret": SECRET})
    wait_for_status(run_id, "COMPLETED")
    lines = wait_for(
        lambda: (ls := _lines(caplog, run_id)) and ls[-1]["status"] == "COMPLETED" and ls,
        what="the COMPLETED line",
    )
    # A worker that has the task claims and starts a first attempt in one move.
    assert [line["status"] for line in lines] == ["QUEUED", "EXECUTING", "COMPLETED"]
    for line in lines:
        assert line["task"] == "test-echo"
        assert line["environment"] == project.environment_ids["dev"]
        assert line["msg"] == f"run {run_id} -> {line['status']}"
    assert SECRET not in caplog.text
    assert all(SECRET not in json.dumps(line) for line in lines)


def test_a_state_change_made_for_a_command_carries_the_command_id(
    caplog: pytest.LogCaptureFixture, project: ProjectKeys
) -> None:
    """The command id comes from the log context the command's task binds."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.service import cancel_run

    caplog.set_level(logging.INFO, logger="reprise.runs")
    api_run = _delayed_run(project)
    with transaction() as session, log_context(command_id="cmd_example"):
        cancel_run(session, api_run)
    [line] = _lines(caplog, api_run)[-1:]
    assert (line["status"], line["command_id"]) == ("CANCELED", "cmd_example")


def test_a_batch_transition_logs_the_run_ids_by_task_and_environment(
    caplog: pytest.LogCaptureFixture, project: ProjectKeys, celery_worker: Any
) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.timers.service import promote_due_runs

    caplog.set_level(logging.INFO, logger="reprise.runs")
    runs = [_delayed_run(project) for _ in range(3)]
    for run_id in runs:
        backdate_delay(run_id)
    with transaction() as session:
        promote_due_runs(session)
    [line] = [ln for ln in _lines(caplog, runs[0]) if ln["status"] == "QUEUED"]
    assert set(runs) <= set(line["run_ids"])
    assert (line["task"], line["environment"]) == ("test-echo", project.environment_ids["dev"])
    assert line["count"] == len(line["run_ids"])
    for run_id in runs:  # the promoted runs were dispatched: let them finish here
        wait_for_status(run_id, "COMPLETED")


def test_a_rolled_back_change_is_not_logged(
    caplog: pytest.LogCaptureFixture, project: ProjectKeys
) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.service import cancel_run

    run_id = _delayed_run(project)
    caplog.set_level(logging.INFO, logger="reprise.runs")

    def cancel_then_fail() -> None:
        with transaction() as session:
            cancel_run(session, run_id)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        cancel_then_fail()
    assert _lines(caplog, run_id) == []
    assert wait_for_status(run_id, "DELAYED")


def _delayed_run(project: ProjectKeys) -> str:
    from fastapi.testclient import TestClient

    from reprise_server.api.app import create_app

    with TestClient(create_app()) as client:
        return triggers.via_api(client, project, task="test-echo", delay="1h")
