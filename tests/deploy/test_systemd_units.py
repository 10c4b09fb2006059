"""`systemctl stop reprise-worker`, reproduced on a real worker started from the unit's
own ExecStart.

systemd is not this test's init (a container), so its stop is emulated exactly as
systemd.kill(5) describes it: KillSignal to every process of the unit's control group
(KillMode=control-group, systemd's default and the shipped unit's) or to the main process
alone (mixed), then SIGKILL to every process left once TimeoutStopSec has passed. The
worker's control group is its process tree: the main process and its pool children.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.units import Unit, units
from tests.support.fixtures import ProjectKeys, wait_for
from tests.support.inflight import Gate, pool_children, running, stop_like_systemd
from tests.support.processes import ReproProcess, own_queues, reprise_process

__all__ = ["own_queues"]

WORKER = units()["reprise-worker"]
# The shipped KillMode, and the other one the unit's comments offer.
KILL_MODES = sorted({WORKER.kill_mode, "control-group", "mixed"})


def _start(unit: Unit, queue_prefix: str, **env: str) -> Any:
    """The unit's command line, with the test's settings (its EnvironmentFile)."""
    program, *argv = unit.exec_start
    assert Path(program).name == "reprise"
    return reprise_process(*argv, env={"REPRISE_QUEUE_PREFIX": queue_prefix, **env}, own_group=True)


@pytest.mark.slow
@pytest.mark.parametrize("kill_mode", KILL_MODES)
def test_stopping_the_worker_unit_lets_its_runs_finish(
    kill_mode: str, api: Any, project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    gate = Gate.trigger(api, project, 2, tmp_path / "gate")
    with _start(WORKER, own_queues) as worker:
        gate.wait_executing_on(worker)
        children = pool_children(worker)
        assert len(children) >= 2
        # The runs finish once the stop is under way (the gate opens when the worker has
        # begun its warm shutdown), well within TimeoutStopSec.
        opened = _open_on_warm_shutdown(gate, worker)
        elapsed, killed = stop_like_systemd(
            worker, kill_mode, WORKER.kill_signal, WORKER.timeout_stop_seconds
        )
        assert opened.is_set(), worker.log(400)
        log = worker.log(400)

    assert not killed, log
    assert elapsed < WORKER.timeout_stop_seconds
    assert worker.process.returncode == 0, log
    rows = gate.rows()
    assert {r.status for r in rows.values()} == {"COMPLETED"}, rows
    assert all(r.attempt_count == 1 for r in rows.values())
    assert sorted(gate.executions()) == sorted((run_id, 1) for run_id in gate.run_ids)
    assert "WorkerLostError" not in log, log
    assert "exited with signal" not in log, log


@pytest.mark.slow
def test_a_run_outlasting_the_stop_timeout_is_killed_and_executed_once_more_later(
    api: Any, project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    """Past TimeoutStopSec (shortened here to 3 s) everything left gets SIGKILL: the run is
    re-executed by the next worker once its heartbeat is stale, never concurrently."""
    gate = Gate.trigger(api, project, 1, tmp_path / "gate")
    with _start(WORKER, own_queues) as first:
        gate.wait_executing_on(first)
        children = pool_children(first)
        _, killed = stop_like_systemd(first, WORKER.kill_mode, WORKER.kill_signal, 3)
    assert killed
    assert not any(running(child) for child in children)
    assert gate.executions() == [(gate.run_ids[0], 1)]

    gate.open()
    # The next worker, and the control process and beat whose recovery sweep republishes
    # the run of a worker that died.
    env = {"REPRISE_QUEUE_PREFIX": own_queues, "REPRISE_LIVENESS_DIR": str(tmp_path)}
    control = reprise_process("control", env=env)
    beat = reprise_process("beat", "--schedule", str(tmp_path / "beat-schedule"), env=env)
    with control, beat, _start(WORKER, own_queues):
        wait_for(
            lambda: {r.status for r in gate.rows().values()} == {"COMPLETED"},
            timeout=60, what="the run to be re-executed",
        )
    [row] = gate.rows().values()
    assert row.attempt_count == 2
    assert gate.executions() == [(gate.run_ids[0], 1), (gate.run_ids[0], 2)]


def _open_on_warm_shutdown(gate: Gate, worker: ReproProcess) -> threading.Event:
    """Opens the gate, from a thread, once the worker has begun its warm shutdown."""
    opened = threading.Event()

    def watch() -> None:
        wait_for(lambda: "Warm shutdown" in worker.log(400), timeout=60, what="warm shutdown")
        gate.open()
        opened.set()

    threading.Thread(target=watch, daemon=True).start()
    return opened
