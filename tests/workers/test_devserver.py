"""``reprise dev`` as a new user meets it: one stack per data directory, ports checked
before anything starts, a worker that cannot load its tasks named at once, and the CLI
finding the stack it runs beside. Real ``reprise dev`` processes on embedded servers."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import wait_for
from tests.support.live_server import free_port


def _env(**extra: str) -> dict[str, str]:
    """A user's environment: no store URLs (embedded servers), nothing of the suite's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRISE_")}
    return {**env, **extra}


def _cli(cwd: Path, *argv: str, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reprise.cli", *argv], cwd=cwd, env=env or _env(),
        capture_output=True, text=True, timeout=timeout, check=False,
    )


@contextmanager
def dev_stack(cwd: Path, port: int, **env: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    log = cwd / "dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reprise.cli", "dev", "--port", str(port),
             "--flower-port", str(free_port())],
            cwd=cwd, env=_env(**env), stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def _ready(process: subprocess.Popen[str], log: Path) -> bool:
    assert process.poll() is None, log.read_text()
    return "Reprise is ready" in log.read_text()


@pytest.mark.slow
def test_one_stack_per_data_dir_and_the_cli_finds_it(tmp_path: Path) -> None:
    port = free_port()
    with dev_stack(tmp_path, port) as (first, log):
        wait_for(lambda: _ready(first, log), timeout=120, interval=0.2, what="the dev stack")
        state_file = tmp_path / ".reprise" / "dev.json"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600  # it holds the dev key
        state = json.loads(state_file.read_text())
        assert state["api"] == f"http://127.0.0.1:{port}"

        began = time.monotonic()
        second = _cli(tmp_path, "dev", "--port", str(free_port()), timeout=30)
        assert second.returncode == 1
        assert time.monotonic() - began < 10
        assert f"already running on {tmp_path / '.reprise'} (pid {first.pid}" in second.stderr
        assert first.poll() is None  # the first stack is untouched

        # The CLI, in this directory, uses the stack's URL and key without being told.
        triggered = _cli(tmp_path, "trigger", "hello-world", "--payload", '{"name": "Ada"}')
        assert triggered.returncode == 0, triggered.stderr
        assert "run_" in triggered.stdout
        keys = _cli(tmp_path, "keys", "list")
        assert keys.returncode == 0, keys.stderr
        assert keys.stdout.splitlines()[0].split()[:3] == ["ID", "PROJECT", "ENV"]


@pytest.mark.slow
def test_an_api_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = _cli(tmp_path, "dev", "--port", str(port), timeout=30)
    assert done.returncode == 1
    assert f"port {port} is in use by another program; pick another with --port" in done.stderr
    assert not (tmp_path / ".reprise" / "postgres").exists()  # nothing was started


@pytest.mark.slow
def test_a_worker_that_cannot_import_its_tasks_stops_the_stack_naming_it(tmp_path: Path) -> None:
    with dev_stack(tmp_path, free_port(), REPRISE_TASK_MODULES="no_such_tasks") as (dev, log):
        code = dev.wait(120)
    output = log.read_text()
    assert code == 1, output
    assert "cannot import REPRISE_TASK_MODULES='no_such_tasks': ModuleNotFoundError" in output
    assert "reprise dev: the worker process exited with code 2" in output
    assert "Reprise is ready" not in output


TASKS = '''\
import asyncio

from reprise import TaskContext, task


@task(id="greet", max_attempts=2)
def greet(payload: dict, ctx: TaskContext) -> dict:
    return {"hello": payload["name"], "attempt": ctx.attempt.number}


@task(id="greet-async")
async def greet_async(payload: dict, ctx: TaskContext) -> dict:
    await asyncio.sleep(0.01)
    return {"hello": payload["name"], "async": True}
'''


@pytest.mark.slow
def test_the_readme_walkthrough_runs_your_own_sync_and_async_tasks(tmp_path: Path) -> None:
    """README "Your own tasks": a package beside where `reprise dev` runs, named in
    REPRISE_TASK_MODULES, is imported by the worker from the current directory."""
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(TASKS)
    with dev_stack(tmp_path, free_port(), REPRISE_TASK_MODULES="myapp.tasks") as (dev, log):
        wait_for(lambda: _ready(dev, log), timeout=120, interval=0.2, what="the dev stack")
        outputs = {}
        for task_id in ("greet", "greet-async"):
            triggered = _cli(tmp_path, "trigger", task_id, "--payload", '{"name": "Ada"}')
            assert triggered.returncode == 0, triggered.stderr
            run_id = triggered.stdout.strip()

            def finished(run_id: str = run_id) -> dict[str, object] | None:
                shown = json.loads(_cli(tmp_path, "runs", "get", run_id, "--json").stdout)
                return shown if shown["status"] == "COMPLETED" else None

            outputs[task_id] = wait_for(finished, timeout=30, interval=0.2)["output"]
        # The banner's one-time dashboard link signs in once.
        link = re.search(r"Dashboard:\s+(\S+)", log.read_text())
        assert link is not None, log.read_text()
        first = httpx.get(link.group(1), follow_redirects=False)
        again = httpx.get(link.group(1), follow_redirects=False)
    assert outputs == {
        "greet": {"hello": "Ada", "attempt": 1},
        "greet-async": {"hello": "Ada", "async": True},
    }
    assert first.status_code == 303
    assert "reprise_session=" in first.headers["set-cookie"]
    assert again.status_code == 404
