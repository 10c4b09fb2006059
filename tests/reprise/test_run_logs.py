"""A run's log through the Python SDK (``runs.logs``) and the CLI (``reprise runs logs
--follow``, a subprocess) against a live API, the lines captured on a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from reprise.client import Client
from reprise.errors import BadRequestError, NotFoundError
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status
from tests.support.live_server import ROOT, LiveServer


def test_runs_logs_returns_typed_lines_after_a_cursor_by_level_and_text(
    client: Client, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "logs-mixed")
    wait_for_status(run_id, "COMPLETED")

    lines = client.runs.logs(run_id)
    assert [line.message for line in lines][:3] == ["debug detail", "starting", "slow query took 1500ms"]
    assert len(lines) == 9
    starting = lines[1]
    assert starting.level == "INFO"
    assert starting.logger == "logs.app"
    assert starting.attempt_number == 1
    assert starting.attributes["order"] == 42
    assert starting.logged_at.tzinfo is not None
    assert [line.seq for line in lines] == sorted(line.seq for line in lines)

    after = client.runs.logs(run_id, after=lines[6].seq)
    assert [line.message for line in after] == ["caught it", "the end"]
    assert after[0].exception is not None
    assert "ValueError: boom in the task" in after[0].exception
    assert client.runs.logs(run_id, after=lines[-1].seq) == []

    assert [line.message for line in client.runs.logs(run_id, level="error")] == [
        "caught it", "the end",
    ]
    assert [(line.level, line.logger) for line in client.runs.logs(run_id, level="WARNING")] == [
        ("WARNING", "logs.db"), ("WARNING", "stderr"), ("ERROR", "logs.app"),
        ("CRITICAL", "logs.app"),
    ]
    assert [line.message for line in client.runs.logs(run_id, search="NOW")] == [
        "no newline yet ...now",
    ]
    with pytest.raises(BadRequestError):
        client.runs.logs(run_id, level="LOUD")


def test_runs_logs_pages_through_a_long_log(
    client: Client, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "logs-many", payload={"count": 2500})
    wait_for_status(run_id, "COMPLETED")
    lines = client.runs.logs(run_id)
    assert [line.message for line in lines] == [f"line {n}" for n in range(2500)]


def test_another_environments_run_is_not_found(
    live_server: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "logs-none")
    wait_for_status(run_id, "COMPLETED")
    with Client(live_server.base_url, project.keys["prod"]) as prod, pytest.raises(NotFoundError):
        prod.runs.logs(run_id)


def test_cli_runs_logs_follow_prints_lines_as_they_come_and_exits_once_the_run_is_final(
    live_server: LiveServer, project: ProjectKeys, celery_worker: Any, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    run_id = triggers.in_db(
        project, "logs-then-wait", payload={"count": 3, "path": str(release)}
    )
    follow = subprocess.Popen(
        [sys.executable, "-m", "reprise.cli", "runs", "logs", run_id, "--follow",
         "--interval", "0.1", "--api-url", live_server.base_url, "--key", project.keys["dev"]],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    printed: list[str] = []

    def read() -> None:
        assert follow.stdout is not None
        printed.extend(follow.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The lines logged while the run waits appear while it still runs...
        wait_for(lambda: len(printed) >= 3, timeout=30, what="the first lines")
        assert follow.poll() is None
        assert ["before the wait 0" in printed[0], "INFO" in printed[0]] == [True, True]
        # ...and once it finishes, the rest is printed and the command exits.
        release.touch()
        assert follow.wait(timeout=30) == 0, follow.stderr.read() if follow.stderr else ""
        reader.join(5)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert [line.split(": ", 1)[1].strip() for line in printed] == [
        "before the wait 0", "before the wait 1", "before the wait 2", "after the wait",
    ]
    assert " INFO     logs.app: " in printed[0]
