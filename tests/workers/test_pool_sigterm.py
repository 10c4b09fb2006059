"""SIGTERM that reaches a prefork worker's pool children directly.

systemd's default ``KillMode=control-group`` signals every process of the unit, pool
children included, at the same moment as the main process. That must be as safe as a
SIGTERM to the main process alone: every run in flight finishes on this worker (the warm
shutdown), none is cut (``WorkerLostError``) or executed a second time, and the worker
exits. The pool's own stops, which are SIGTERMs from the main process to a child (a cold
shutdown cancelling its runs), still work.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import ProjectKeys, wait_for
from tests.support.inflight import (
    Gate,
    every_process,
    pool_children,
    prefork_worker,
    running,
    send,
)

pytestmark = pytest.mark.slow

RUNS = 4
CUT = ("WorkerLostError", "exited with signal", "exited with exitcode")


def _finished_once(gate: Gate) -> None:
    rows = gate.rows()
    assert {r.status for r in rows.values()} == {"COMPLETED"}, rows
    assert all(r.attempt_count == 1 for r in rows.values()), rows
    mine = [e for e in gate.executions() if e[0] in gate.run_ids]
    assert sorted(mine) == sorted((run_id, 1) for run_id in gate.run_ids)


def test_sigterm_to_the_main_process_and_every_pool_child_cuts_no_run(
    api: Any, project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    gate = Gate.trigger(api, project, RUNS, tmp_path / "gate")
    with prefork_worker(own_queues, RUNS) as worker:
        gate.wait_executing_on(worker)
        children = pool_children(worker)
        assert len(children) == RUNS
        send(every_process(worker), signal.SIGTERM)

        wait_for(lambda: "Warm shutdown" in worker.log(400), what="the warm shutdown")
        # The runs are still executing on the children that got the signal...
        assert all(running(child) for child in children), worker.log(400)
        assert {r.status for r in gate.rows().values()} == {"EXECUTING"}
        # ...and finish there once the test lets them.
        gate.open()
        assert worker.wait(timeout=60) == 0, worker.log(400)
        log = worker.log(400)

    _finished_once(gate)
    assert not any(word in log for word in CUT), log


def test_sigterm_to_the_pool_children_alone_stops_nothing(
    api: Any, project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    gate = Gate.trigger(api, project, RUNS, tmp_path / "gate")
    with prefork_worker(own_queues, RUNS) as worker:
        gate.wait_executing_on(worker)
        children = pool_children(worker)
        send(children, signal.SIGTERM)

        # Each child says it ignored the signal, and goes on with its run.
        wait_for(
            lambda: worker.log(400).count("ignores SIGTERM") == RUNS, what="every child's warning"
        )
        assert worker.alive()
        assert all(running(child) for child in children)
        assert {r.status for r in gate.rows().values()} == {"EXECUTING"}
        gate.open()
        wait_for(
            lambda: {r.status for r in gate.rows().values()} == {"COMPLETED"},
            timeout=30, what="every run to complete",
        )
        # The worker goes on serving, with the same children.
        later = Gate.trigger(api, project, 1, gate.path)
        wait_for(
            lambda: {r.status for r in later.rows().values()} == {"COMPLETED"},
            timeout=30, what="a later run to complete",
        )
        assert pool_children(worker) == children
        log = worker.log(400)

    _finished_once(gate)
    assert not any(word in log for word in CUT), log


def test_a_cold_shutdown_still_cancels_the_runs_in_flight(
    api: Any, project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    """SIGQUIT: after the soft shutdown the main process cancels each running task with a
    SIGTERM of its own to the child, which the child obeys."""
    gate = Gate.trigger(api, project, 2, tmp_path / "gate")
    with prefork_worker(own_queues, 2, REPRISE_WORKER_SOFT_SHUTDOWN_SECONDS="0.5") as worker:
        gate.wait_executing_on(worker)
        children = pool_children(worker)
        worker.signal(signal.SIGQUIT)
        # The gate stays shut: only the cancel can end the runs.
        assert worker.wait(timeout=30) == 0, worker.log(400)
        log = worker.log(400)

    assert not any(running(child) for child in children)
    assert "ignores SIGTERM" not in log, log
    assert {r.status for r in gate.rows().values()} == {"EXECUTING"}  # recovered later
    assert len(gate.executions()) == 2
