"""A live Reprise API (uvicorn in a subprocess) for tests that talk HTTP like a real client."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def live_api(startup_timeout: float = 30.0) -> Iterator[LiveServer]:
    """``uvicorn --factory api.app:create_app`` on a free port, with this session's settings.

    The subprocess inherits the ``REPRISE_*`` variables tests/conftest.py put in os.environ
    (this session's Postgres, Redis and queue prefix), so the in-process ``celery_worker``
    executes what it publishes.
    """
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="reprise-live-api-", suffix=".log")[1])
    command = [
        sys.executable, "-m", "uvicorn", "reprise_server.api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT
        )
    server = LiveServer(f"http://127.0.0.1:{port}", log_path)
    with serving(
        process, log_path,
        ready=lambda: httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200,
        what="the API", timeout=startup_timeout, log=server.log_tail,
    ):
        yield server


@contextlib.contextmanager
def serving(
    process: subprocess.Popen[bytes], log_path: Path, *, ready: Callable[[], bool], what: str,
    timeout: float, log: Callable[[], str] | None = None, interval: float = 0.05,
) -> Iterator[None]:
    """Wait until ``ready()`` (a refused connection counts as not yet), failing at once if
    the process exits; then hold it, and on exit stop it (SIGTERM, SIGKILL after 10 s)
    and remove its log."""
    tail = log or (lambda: log_path.read_text(errors="replace"))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{what} exited with {process.returncode}:\n{tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if ready():
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not become ready:\n{tail()}")
            time.sleep(interval)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_path.unlink(missing_ok=True)
