"""Realtime through the official SDK: its Electric shape-stream client long-polls a live
server while a real worker executes the runs it follows."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer
from tests.support.processes import reprise_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_subscribe_to_run_follows_a_run_from_queued_to_completed(
    official_sdk: Path, live_server: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    # The run goes to a queue of its own: it stays QUEUED until the subscription has seen
    # it so, then a real worker serving that queue starts and executes it.
    queue = f"realtime-{secrets.token_hex(3)}"
    node = subprocess.Popen(
        ["node", "realtime.mjs"],
        cwd=official_sdk,
        env={**os.environ, "TRIGGER_API_URL": live_server.base_url,
             "TRIGGER_SECRET_KEY": project.keys["dev"], "E2E_QUEUE": queue},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    steps: dict[str, Any] = {}
    statuses: list[str] = []
    with contextlib.ExitStack() as stack:
        worker = None
        assert node.stdout is not None
        for line in node.stdout:
            record = json.loads(line)
            if record["step"] != "status":
                steps[record["step"]] = record
                continue
            statuses.append(record["result"]["status"])
            if worker is None:  # the subscription has seen the run QUEUED: execute it now
                worker = stack.enter_context(reprise_process("worker", "--queues", queue))
        node.wait(timeout=60)
        context = (
            f"steps={steps}\nstderr={node.stderr.read() if node.stderr else ''}\n"
            f"server:\n{live_server.log_tail()}\nworker:\n{worker.log() if worker else ''}"
        )
    assert node.returncode == 0, context
    for name, record in steps.items():
        assert record["ok"], f"{name}: {record.get('error')}\n{context}"

    followed = steps["subscribe-to-run"]["result"]
    assert followed["seen"][0] == "QUEUED"
    assert "EXECUTING" in followed["seen"]
    assert followed["seen"][-1] == "COMPLETED"
    assert followed["seen"] == statuses
    assert set(followed["seen"]) <= {"QUEUED", "DEQUEUED", "EXECUTING", "COMPLETED"}
    assert followed["isSuccess"]
    assert followed["finishedAtIsDate"]
    assert followed["output"] == {"slept": 1.0}
    assert followed["tags"] == ["realtime-e2e"]
    # A public token sees the run but not its payload or output; a finished run
    # closes the subscription at once.
    assert steps["subscribe-with-public-token"]["result"] == [
        {"status": "COMPLETED", "hasOutput": False}
    ]
    tagged = steps["subscribe-to-runs-with-tag"]["result"]
    assert tagged["seen"] == tagged["triggered"]
    assert tagged["statuses"] == ["COMPLETED"]
    batch = steps["subscribe-to-batch"]["result"]
    assert batch == {
        "count": 3,
        "statuses": ["COMPLETED"],
        "outputs": ["Hello, b0!", "Hello, b1!", "Hello, b2!"],
    }
