"""Runs held in flight on a real worker until the test lets them finish, and the signals
an operator or systemd sends to the worker's processes.

The runs execute ``test-wait-file``: each logs its execution to ``<gate>.log`` and then
waits for the file ``<gate>`` to exist, so a run is provably executing user code when
the test signals, and finishes only when the test creates the gate.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for
from tests.support.processes import ReproProcess, reprise_process

__all__ = [
    "Gate", "every_process", "pool_children", "prefork_worker", "running", "send",
    "stop_like_systemd",
]


@dataclass
class Gate:
    path: Path
    run_ids: list[str]

    @classmethod
    def trigger(cls, api: Any, project: ProjectKeys, runs: int, path: Path) -> Gate:
        ids = [
            triggers.via_api(api, project, task="test-wait-file", payload={"path": str(path)})
            for _ in range(runs)
        ]
        return cls(path, ids)

    def executions(self) -> list[tuple[str, int]]:
        """(run id, attempt) of every execution that reached user code, in order."""
        log = Path(f"{self.path}.log")
        lines = log.read_text().splitlines() if log.exists() else []
        return [(run_id, int(attempt)) for run_id, attempt, _ in map(str.split, lines)]

    def open(self) -> None:
        self.path.touch()

    def rows(self) -> dict[str, Any]:
        from reprise_server.shared.db import transaction

        with transaction() as session:
            rows = session.execute(
                text("SELECT id, status, attempt_count, locked_by FROM runs WHERE id = ANY(:ids)"),
                {"ids": self.run_ids},
            )
            return {row.id: row for row in rows}

    def wait_executing_on(self, worker: ReproProcess) -> None:
        """Every run is EXECUTING, held by ``worker``, and inside the task function."""
        me = f"{socket.gethostname()}:{worker.pid}"

        def all_in_flight() -> bool:
            assert worker.alive(), worker.log()
            rows = self.rows().values()
            held = all(r.status == "EXECUTING" and r.locked_by == me for r in rows)
            return held and len(self.executions()) == len(self.run_ids)

        # The worker's processes register its version in every environment as they boot:
        # on the suite's database (thousands of environments, other catalogues registered
        # by earlier tests) that alone can take a minute on a slow 2-core machine.
        try:
            wait_for(all_in_flight, timeout=180, interval=0.02, what="every run executing")
        except AssertionError:
            raise AssertionError(f"not every run executing after 180 s\n{worker.log()}") from None


def prefork_worker(queue_prefix: str, concurrency: int, **env: str) -> Any:
    """``reprise worker --pool prefork`` in a process group of its own."""
    return reprise_process(
        "worker", "--pool", "prefork", "--concurrency", str(concurrency),
        "--hostname", f"inflight-{os.getpid()}@%h",
        env={"REPRISE_QUEUE_PREFIX": queue_prefix, **env}, own_group=True,
    )


def pool_children(worker: ReproProcess) -> list[psutil.Process]:
    return psutil.Process(worker.pid).children(recursive=True)


def every_process(worker: ReproProcess) -> list[psutil.Process]:
    """The worker's process tree: what systemd's control group holds for it (a pool child
    leaves the process group, but not the cgroup)."""
    return [psutil.Process(worker.pid), *pool_children(worker)]


def send(processes: list[psutil.Process], sig: signal.Signals) -> None:
    """One signal to each process, back to back (as systemd sends them)."""
    for process in processes:
        with_gone_ignored(process.send_signal, sig)


def with_gone_ignored(action: Any, *args: Any) -> None:
    try:
        action(*args)
    except psutil.NoSuchProcess:
        pass


def stop_like_systemd(
    worker: ReproProcess, kill_mode: str, kill_signal: signal.Signals, timeout_stop: float
) -> tuple[float, bool]:
    """``systemctl stop`` of a unit whose main process is ``worker``: ``KillSignal`` to every
    process of the unit (``control-group``) or to the main process alone (``mixed``), then,
    once ``TimeoutStopSec`` has passed with any process of the unit left, SIGKILL to every
    one. Returns (seconds until the unit was empty, whether SIGKILL was needed)."""
    unit = every_process(worker)
    started = time.monotonic()
    send(unit if kill_mode == "control-group" else unit[:1], kill_signal)
    deadline = started + timeout_stop
    while _left(worker, unit) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _left(worker, unit)
    if left:
        send(left, signal.SIGKILL)
    worker.wait(timeout=10)
    wait_for(lambda: not _left(worker, unit), timeout=10, what="the unit to be empty")
    return time.monotonic() - started, bool(left)


def running(process: psutil.Process) -> bool:
    """Alive: not gone, and not a zombie waiting to be reaped."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _left(worker: ReproProcess, unit: list[psutil.Process]) -> list[psutil.Process]:
    # The main process is the test's child: Popen reaps it (psutil must not, or its exit
    # status would be lost); the pool children are reaped by it, or by init once it is gone.
    return [
        p for p in unit if (worker.alive() if p.pid == worker.pid else running(p))
    ]
