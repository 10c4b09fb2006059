"""Real ``reprise`` processes (worker, beat, flower) in subprocesses, with this session's
settings (the ``REPRISE_*`` variables tests/conftest.py put in ``os.environ``) plus
overrides, and their output in a log file shown when something goes wrong."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.live_server import ROOT, free_port

__all__ = ["ReproProcess", "free_port", "own_queues", "reprise_process"]


@pytest.fixture
def own_queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A queue prefix of the test's own: what the test publishes (through a real Celery app
    configured like every other, with that ``queue_prefix``) reaches only the subprocesses
    it starts with ``REPRISE_QUEUE_PREFIX`` set to it, never the session's worker."""
    import redis
    from celery import Celery

    from reprise_server.shared import broker
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    prefix = f"{settings.queue_prefix}-own-{secrets.token_hex(3)}"
    own = settings.model_copy(update={"queue_prefix": prefix})
    app = broker.configure_celery(Celery("reprise-own-queues"), own)
    monkeypatch.setattr(broker, "celery_app", lambda: app)
    yield prefix
    client = redis.Redis.from_url(settings.redis_url)
    leftovers = client.keys(f"{prefix}.*")
    if leftovers:
        client.delete(*leftovers)


@dataclass
class ReproProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, sig: int = signal.SIGTERM) -> None:
        """Signal every process of its group, as ``kill -- -PGID`` or systemd does."""
        os.killpg(os.getpgid(self.process.pid), sig)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)


    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process did not exit in {timeout}s:\n{self.log()}") from None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def reprise_process(
    *argv: str,
    env: dict[str, str] | None = None,
    own_group: bool = False,
    console_script: bool = False,
    cwd: Path = ROOT,
) -> Iterator[ReproProcess]:
    """``python -m reprise.cli <argv>`` in ``cwd``; stopped (SIGTERM, then SIGKILL) on exit.

    ``own_group``: in a process group of its own (so a test can signal the whole group).
    ``console_script``: the environment's ``reprise`` script instead, exactly as a user runs
    it (its import path holds only the environment, not the current directory).
    """
    program = (
        [str(Path(sys.executable).with_name("reprise"))]
        if console_script
        else [sys.executable, "-m", "reprise.cli"]
    )
    log_path = Path(tempfile.mkstemp(prefix=f"reprise-{argv[0]}-", suffix=".log")[1])
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*program, *argv],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0 if own_group else None,
        )
    running = ReproProcess(process, log_path)
    try:
        yield running
    finally:
        running.stop()
        log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def run_stack(name: str, schedule: Path, *, slots: int = 1) -> Iterator[list[ReproProcess]]:
    """A prefork ``reprise worker`` of ``slots`` slots, ``reprise control`` (timers,
    commands) and ``reprise beat`` (the sweeps) on a queue prefix of their own, which this
    process publishes to (``broker.celery_app`` and ``REPRISE_QUEUE_PREFIX`` patched) while
    the block runs; their leftover keys in Redis are deleted afterwards."""
    import redis
    from celery import Celery

    from reprise_server.shared import broker
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    prefix = f"{settings.queue_prefix}-{name}-{secrets.token_hex(3)}"
    app = broker.configure_celery(
        Celery(f"reprise-{name}"), settings.model_copy(update={"queue_prefix": prefix})
    )
    env = {"REPRISE_QUEUE_PREFIX": prefix}
    with pytest.MonkeyPatch.context() as patch, contextlib.ExitStack() as stack:
        patch.setattr(broker, "celery_app", lambda: app)
        patch.setitem(os.environ, "REPRISE_QUEUE_PREFIX", prefix)  # an API subprocess's too
        worker = stack.enter_context(reprise_process(
            "worker", "--pool", "prefork", "--concurrency", str(slots),
            "--hostname", f"{name}-{os.getpid()}@%h", env=env, own_group=True,
        ))
        control = stack.enter_context(reprise_process("control", env=env))
        beat = stack.enter_context(reprise_process("beat", "--schedule", str(schedule), env=env))
        deadline = time.monotonic() + 60
        while "ready." not in worker.log(200):
            if not worker.alive() or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not get ready:\n{worker.log()}")
            time.sleep(0.05)
        yield [worker, control, beat]
    client = redis.Redis.from_url(settings.redis_url)
    leftovers = client.keys(f"{prefix}.*")
    if leftovers:
        client.delete(*leftovers)
