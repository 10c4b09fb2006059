"""A real S3-compatible server for packet-store tests: moto in server mode, in a subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.live_server import free_port, serving


@contextlib.contextmanager
def moto_server(startup_timeout: float = 30.0) -> Iterator[str]:
    """``python -m moto.server`` on a free loopback port; yields its endpoint URL."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix="reprise-moto-", suffix=".log")[1])
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
        )
    url = f"http://127.0.0.1:{port}"
    with serving(
        process, log_path, what="moto", timeout=startup_timeout, interval=0.1,
        ready=lambda: httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500,
    ):
        yield url
