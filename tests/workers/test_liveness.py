"""Liveness for Kubernetes/Compose probes: ``reprise healthcheck worker|beat`` exits 0 only
while the process's loop keeps touching its liveness file."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reprise_server.shared.settings import Settings
from tests.support.fixtures import wait_for
from tests.support.live_server import ROOT
from tests.support.processes import reprise_process


def _backdate(path: Path, seconds: float = 3600) -> None:
    old = path.stat().st_mtime - seconds
    os.utime(path, (old, old))


def test_healthcheck_is_healthy_only_while_the_file_is_fresh(tmp_path: Path) -> None:
    from reprise_server.workers.monitoring import liveness_path
    from reprise_server.workers.ops import healthcheck

    settings = Settings(liveness_dir=str(tmp_path), liveness_max_age_seconds=30)
    path = liveness_path("worker", settings)
    assert healthcheck("worker", settings) == 1  # never started
    path.touch()
    assert healthcheck("worker", settings) == 0
    _backdate(path, 31)
    assert healthcheck("worker", settings) == 1
    assert healthcheck("beat", settings) == 1  # each process has its own file


def test_the_running_worker_keeps_its_liveness_file_fresh(celery_worker: Any) -> None:
    from reprise_server.workers.monitoring import liveness_path
    from reprise_server.workers.ops import healthcheck

    wait_for(liveness_path("worker").exists, timeout=5, what="the worker's liveness file")
    assert healthcheck("worker") == 0


def _healthcheck_cli(process: str, env: dict[str, str]) -> int:
    return subprocess.run(
        [sys.executable, "-m", "reprise.cli", "healthcheck", process],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        timeout=60,
        check=False,
    ).returncode


@pytest.mark.slow
def test_beat_touches_its_liveness_file_on_every_tick(tmp_path: Path) -> None:
    """A real ``reprise beat``; its own queue prefix so the sweeps it sends reach nobody."""
    import redis

    from reprise_server.shared.settings import get_settings

    prefix = f"beat-test-{secrets.token_hex(3)}"
    env = {
        "REPRISE_QUEUE_PREFIX": prefix,
        "REPRISE_LIVENESS_DIR": str(tmp_path),
        "REPRISE_LIVENESS_INTERVAL_SECONDS": "0.2",
    }
    path = tmp_path / f"{prefix}-beat.alive"
    try:
        with reprise_process("beat", "--schedule", str(tmp_path / "schedule"), env=env) as beat:

            def ticking() -> bool:
                assert beat.alive(), beat.log()
                return path.exists()

            wait_for(ticking, timeout=30, what="beat's first tick")
            assert _healthcheck_cli("beat", env) == 0
            _backdate(path)
            backdated = path.stat().st_mtime
            wait_for(
                lambda: path.stat().st_mtime > backdated,
                timeout=10,
                what="a later tick to touch the file again",
            )
            beat.signal()
            beat.wait(timeout=20)
        _backdate(path)
        assert _healthcheck_cli("beat", env) == 1
    finally:
        redis.Redis.from_url(get_settings().redis_url).delete(f"{prefix}.sweeps")
