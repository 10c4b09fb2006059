"""A live Reprise API in a subprocess and the official ``@trigger.dev/sdk`` installed from npm.

The SDK is installed by a fixture (never at import) into ``tests/e2e/node/node_modules``
(ignored by git) with ``npm ci`` from the committed lockfile, only when the pinned version is
not there already; a file lock keeps concurrent pytest sessions from installing at once.
Tests are skipped only when ``node``/``npm`` are not on PATH (CI has them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import LiveServer, live_api

NODE_DIR = Path(__file__).resolve().parent / "node"
INSTALL_TIMEOUT_SECONDS = 240
SCENARIO_TIMEOUT_SECONDS = 60


def pinned_sdk_version() -> str:
    manifest = json.loads((NODE_DIR / "package.json").read_text())
    return str(manifest["dependencies"]["@trigger.dev/sdk"])


def installed_sdk_version() -> str | None:
    installed = NODE_DIR / "node_modules" / "@trigger.dev" / "sdk" / "package.json"
    if not installed.exists() or not (NODE_DIR / "node_modules" / ".package-lock.json").exists():
        return None
    return str(json.loads(installed.read_text()).get("version"))


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    # Other engineers' pytest sessions share this working tree: one installer at a time.
    digest = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"reprise-e2e-npm-{digest}.lock"
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def official_sdk(request: pytest.FixtureRequest) -> Path:
    """The folder holding the driver scripts, with the pinned official SDK installed."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("node and npm are needed to drive the official @trigger.dev/sdk; not on PATH")
    wanted = pinned_sdk_version()
    with _install_lock():
        if installed_sdk_version() != wanted:
            started = time.monotonic()
            command = [npm, "ci" if (NODE_DIR / "package-lock.json").exists() else "install"]
            done = subprocess.run(
                [*command, "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
            assert done.returncode == 0, f"npm failed:\n{done.stdout}\n{done.stderr}"
            seconds = time.monotonic() - started
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"e2e: installed @trigger.dev/sdk {wanted} in {seconds:.1f}s")
    assert installed_sdk_version() == wanted
    return NODE_DIR


@pytest.fixture(scope="module")
def live_server() -> Iterator[LiveServer]:
    """A live API in a subprocess for this module (its runs execute on ``celery_worker``)."""
    with live_api() as server:
        yield server


@dataclass
class Scenario:
    """The JSON lines one driver script printed, by step name."""

    script: str
    steps: dict[str, dict[str, Any]]
    stderr: str
    server_log: str

    def ok(self, step: str) -> Any:
        """The step's result; fails with the SDK's error (and the server log) if it threw."""
        record = self.steps.get(step)
        assert record is not None, f"{self.script} printed no step {step!r}: {self._context()}"
        assert record["ok"], (
            f"{self.script} step {step!r} failed: {record['error']}\n{self._context()}"
        )
        return record["result"]

    def error(self, step: str) -> dict[str, Any]:
        """The error the SDK threw in a step expected to fail."""
        record = self.steps.get(step)
        assert record is not None, f"{self.script} printed no step {step!r}: {self._context()}"
        assert not record["ok"], f"{self.script} step {step!r} did not fail: {record['result']}"
        return dict(record["error"])

    def _context(self) -> str:
        return f"steps={list(self.steps)}\nstderr:\n{self.stderr}\nserver log:\n{self.server_log}"


@pytest.fixture
def run_scenario(official_sdk: Path, live_server: LiveServer) -> Any:
    def run(script: str, secret_key: str, **env: str) -> Scenario:
        done = subprocess.run(
            ["node", script],
            cwd=official_sdk,
            env={
                **os.environ,
                "TRIGGER_API_URL": live_server.base_url,
                "TRIGGER_SECRET_KEY": secret_key,
                **env,
            },
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT_SECONDS,
            check=False,
        )
        steps: dict[str, dict[str, Any]] = {}
        for line in done.stdout.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict) and "step" in record:
                    steps[record["step"]] = record
        scenario = Scenario(script, steps, done.stderr, live_server.log_tail())
        assert done.returncode == 0, (
            f"node {script} exited {done.returncode}: {scenario._context()}"
        )
        return scenario

    return run
