"""The control plane never waits behind user code: with every execution slot of
the only worker held by a long run, the control process still expires TTLs, promotes
delayed runs, applies replays and fires rescheduled timers on time.

Real processes on a queue prefix of the test's own: a worker with 2 slots, ``reprise
control`` and ``reprise beat``.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for
from tests.support.processes import reprise_process

pytestmark = pytest.mark.slow

LONG_RUN_SECONDS = 25


def _status(run_id: str) -> str:
    return str(run_row(run_id).status)


def _command_status(run_id: str) -> str | None:
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return session.execute(
            text("SELECT status FROM commands WHERE run_id = :id AND kind = 'replay'"),
            {"id": run_id},
        ).scalar()


def test_ttl_delays_replays_and_reschedules_keep_time_while_every_slot_is_busy(
    api: Any, project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    env = {"REPRISE_QUEUE_PREFIX": own_queues, "REPRISE_LIVENESS_DIR": str(tmp_path)}
    worker = reprise_process(
        "worker", "--pool", "threads", "--concurrency", "2", env=env, own_group=True
    )
    control = reprise_process("control", env=env)
    beat = reprise_process("beat", "--schedule", str(tmp_path / "beat-schedule"), env=env)
    with worker as busy, control as ctl, beat as sched:
        long_runs = [
            triggers.via_api(api, project, task="test-sleep", payload={"seconds": LONG_RUN_SECONDS})
            for _ in range(2)
        ]

        def slots_full() -> bool:
            assert busy.alive(), busy.log()
            return all(_status(r) == "EXECUTING" for r in long_runs)

        wait_for(slots_full, timeout=30, what="both slots busy")

        expiring = triggers.via_api(api, project, task="test-echo", ttl="2s")
        delayed = triggers.via_api(api, project, task="test-echo", delay="2s")
        far = triggers.via_api(api, project, task="test-echo", delay="1h")
        moved = api.post(
            f"/api/v1/runs/{far}/reschedule", json={"delay": "2s"}, headers=project.headers()
        )
        assert moved.status_code == 200, moved.text
        replay = api.post(f"/api/v1/runs/{long_runs[0]}/replay", headers=project.headers())
        assert replay.status_code == 200, replay.text
        replayed = replay.json()["id"]

        def control_did_its_work() -> bool:
            assert ctl.alive(), ctl.log()
            assert sched.alive(), sched.log()
            return (
                _status(expiring) == "EXPIRED"
                and run_row(delayed).queued_at is not None
                and run_row(far).queued_at is not None
                and _command_status(long_runs[0]) == "APPLIED"
            )

        wait_for(control_did_its_work, timeout=15, interval=0.1, what="the control plane")
        # The replay's new run exists (created by the control process, not by a read) and
        # waits for a free slot, like the promoted runs.
        assert _status(replayed) == "QUEUED"
        assert _status(delayed) == "QUEUED"
        assert _status(far) == "QUEUED"
        # ...and all of it happened while the long runs still held every slot.
        assert [_status(r) for r in long_runs] == ["EXECUTING", "EXECUTING"]
        busy.signal_group(signal.SIGKILL)


DEFAULT_TIMINGS = {  # the shipped defaults (the suite's own are much shorter)
    "REPRISE_WORKER_HEARTBEAT_SECONDS": "2.5",
    "REPRISE_STALE_RUN_SECONDS": "10",
}


def _attempts(run_id: str) -> list[Any]:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs import attempts_repository as repo

    with transaction() as session:
        return repo.attempts_of(session, [run_id])[run_id]


def _db_now() -> Any:
    from reprise_server.shared.db import db_now, transaction

    with transaction() as session:
        return db_now(session)


@pytest.mark.parametrize("killed", ["whole worker", "pool child"])
def test_a_run_whose_worker_was_killed_is_re_executed_within_15s_with_default_settings(
    api: Any, project: ProjectKeys, own_queues: str, tmp_path: Path, killed: str
) -> None:
    import psutil

    env = {"REPRISE_QUEUE_PREFIX": own_queues, **DEFAULT_TIMINGS}

    def worker(name: str) -> Any:
        return reprise_process(
            "worker", "--pool", "prefork", "--concurrency", "1", "--hostname", f"{name}@%h",
            env=env, own_group=True,
        )

    control = reprise_process("control", env=env)
    beat = reprise_process("beat", "--schedule", str(tmp_path / "beat-schedule"), env=env)
    # Both workers are up before the run is triggered: the bound is the recovery's, not a
    # worker's start (a worker started after the kill took seconds to boot in a loaded CI
    # run). Whichever takes the run is killed; the other re-executes it.
    with control, beat, worker("first") as first, worker("second") as second:
        for started in (first, second):
            wait_for(lambda started=started: "ready." in started.log(200), timeout=60,
                     what="both workers to be ready")
        run_id = triggers.via_api(api, project, task="test-sleep", payload={"seconds": 3})
        wait_for(lambda: _status(run_id) == "EXECUTING", timeout=30, what="the first attempt")
        holder = int(run_row(run_id).locked_by.rsplit(":", 1)[1])
        [doomed] = [w for w in (first, second) if w.pid == holder]
        if killed == "whole worker":
            doomed.signal_group(signal.SIGKILL)
        else:  # the parent survives, sees its child die and hands the message back
            [child] = psutil.Process(doomed.pid).children()
            child.kill()
        killed_at = _db_now()
        done = wait_for(
            lambda: run_row(run_id) if _status(run_id) == "COMPLETED" else None,
            timeout=40, interval=0.1, what="the run to be re-executed",
        )
    lost, again = _attempts(run_id)
    assert lost.error["name"] == "WorkerLost"
    assert again.status == "COMPLETED"
    assert done.attempt_count == 2
    recovery = (again.started_at - killed_at).total_seconds()
    print(f"{killed}: re-executed {recovery:.1f}s after the kill")
    assert recovery <= 15
