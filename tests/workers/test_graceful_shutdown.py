"""A rolling restart of workers under load loses nothing: SIGTERM to a real prefork
worker mid-load, then a second worker takes over; every run and command reaches its end
state, and no run executes twice.

The runs and commands are published to a queue prefix of this test's own
(:func:`tests.support.processes.own_queues`), consumed only by the subprocesses: the
session's in-process worker never takes part.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for
from tests.support.processes import ReproProcess, free_port, reprise_process

pytestmark = pytest.mark.slow

RUNS = 40
REPLAYS = 5


def _query(sql: str, **params: Any) -> list[Any]:
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return list(session.execute(text(sql), params))


def _runs(environment_id: str) -> list[Any]:
    return _query(
        "SELECT id, status, attempt_count, locked_by FROM runs WHERE environment_id = :env",
        env=environment_id,
    )


def _identity(worker: ReproProcess) -> str:
    # workers.runtime names a worker <hostname>:<pid of its main process>.
    return f"{socket.gethostname()}:{worker.pid}"


def _finished_by(environment_id: str, worker: str) -> int:
    [(count,)] = _query(
        "SELECT count(*) FROM attempts a JOIN runs r ON r.id = a.run_id "
        "WHERE r.environment_id = :env AND a.worker = :worker AND a.status = 'COMPLETED'",
        env=environment_id,
        worker=worker,
    )
    return int(count)


def _worker(name: str, env: dict[str, str], *, own_group: bool = False) -> Any:
    return reprise_process(
        "worker", "--pool", "prefork", "--concurrency", "2", "--hostname", f"{name}@%h",
        env=env, own_group=own_group,
    )


def test_sigterm_to_a_worker_under_load_loses_nothing(
    api: Any, project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    from reprise_server.shared.broker import broker_client, queue_names
    from reprise_server.shared.settings import Settings, get_settings
    from reprise_server.workers.ops import healthcheck

    env_id = project.environment_ids["dev"]
    originals = [
        triggers.via_api(api, project, "test-sleep", payload={"seconds": 0.1}) for _ in range(RUNS)
    ]
    for run_id in originals[:REPLAYS]:
        response = api.post(f"/api/v1/runs/{run_id}/replay", headers=project.headers())
        assert response.status_code == 200, response.text
    settings = get_settings().model_copy(
        update={"queue_prefix": own_queues, "liveness_dir": str(tmp_path)}
    )
    worker_env = {
        "REPRISE_QUEUE_PREFIX": own_queues,
        "REPRISE_LIVENESS_DIR": str(tmp_path),
        "REPRISE_LIVENESS_INTERVAL_SECONDS": "0.2",
    }

    with reprise_process("control", env=worker_env), _worker("first", worker_env) as first:
        me = _identity(first)

        def mid_load() -> list[str] | None:
            assert first.alive(), first.log()
            running = [r.id for r in _runs(env_id) if r.status == "EXECUTING" and r.locked_by == me]
            return running if running and _finished_by(env_id, me) >= 4 else None

        running = wait_for(mid_load, timeout=60, interval=0.01, what="the first worker mid-load")
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0, first.log()

    # Warm shutdown: what the worker was running, it finished...
    by_id = {r.id: r for r in _runs(env_id)}
    assert all(by_id[run_id].status == "COMPLETED" for run_id in running)
    # ...nothing is left half-done, and every run it did not start is back in the queue.
    assert {r.status for r in by_id.values()} <= {"QUEUED", "COMPLETED"}
    waiting = sum(1 for r in by_id.values() if r.status == "QUEUED")
    assert waiting > 0, "the first worker drained everything: SIGTERM came too late"
    client = broker_client(get_settings().redis_url)
    queued = {run_id for run_id, r in by_id.items() if r.status == "QUEUED"}
    messages = [json.loads(m) for m in client.lrange(queue_names(settings)["runs"], 0, -1)]
    delivered = [ast.literal_eval(m["headers"]["argsrepr"])[0] for m in messages]
    assert queued <= set(delivered)  # every run it did not start has its message back
    # Anything more is a look-again delivery (``watch``) for a run that finished: harmless,
    # execution is idempotent; a lost message would not be.
    assert all(by_id[run_id].status == "COMPLETED" for run_id in set(delivered) - queued)

    metrics_port = free_port()
    with reprise_process("control", env=worker_env), _worker(
        "second", {**worker_env, "REPRISE_WORKER_METRICS_PORT": str(metrics_port)}
    ) as second:

        def all_done() -> list[Any] | None:
            assert second.alive(), second.log()
            rows = _runs(env_id)
            done = len(rows) == RUNS + REPLAYS and all(r.status == "COMPLETED" for r in rows)
            return rows if done else None

        rows = wait_for(all_done, timeout=90, interval=0.05, what="every run to complete")
        by_second = _finished_by(env_id, _identity(second))

        # The worker's exporter sums what its prefork children observed.
        exported = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        line = f'reprise_run_state_changes_total{{status="COMPLETED",task="test-sleep"}} {by_second:.1f}'
        assert line in exported

        # Liveness under prefork: the worker's event loop keeps touching the file.
        liveness = Settings(
            liveness_dir=str(tmp_path), queue_prefix=own_queues, liveness_max_age_seconds=30
        )
        assert healthcheck("worker", liveness) == 0
        path = tmp_path / f"{own_queues}-worker.alive"
        os.utime(path, (0, 0))
        wait_for(lambda: healthcheck("worker", liveness) == 0, timeout=10, what="a fresh touch")

    # Nothing ran twice: one attempt per run, and every attempt completed.
    assert all(r.attempt_count == 1 for r in rows), [r for r in rows if r.attempt_count != 1]
    [(attempts, completed)] = _query(
        "SELECT count(*), count(*) FILTER (WHERE a.status = 'COMPLETED') FROM attempts a "
        "JOIN runs r ON r.id = a.run_id WHERE r.environment_id = :env",
        env=env_id,
    )
    assert attempts == completed == RUNS + REPLAYS
    assert _finished_by(env_id, me) + by_second == RUNS + REPLAYS
    assert by_second > 0
    # Every accepted command was applied.
    [(applied, total)] = _query(
        "SELECT count(*) FILTER (WHERE status = 'APPLIED'), count(*) FROM commands "
        "WHERE environment_id = :env",
        env=env_id,
    )
    assert applied == total == REPLAYS


def test_sigterm_to_the_worker_process_group_lets_running_tasks_finish(
    api: Any, project: ProjectKeys, own_queues: str
) -> None:
    """systemd and `kill -- -PGID` signal every process of the group: the pool children
    must not be cut; only the parent takes the signal and shuts down warm."""
    env_id = project.environment_ids["dev"]
    runs = [
        triggers.via_api(api, project, "test-sleep", payload={"seconds": 1.5}) for _ in range(4)
    ]
    with _worker("grouped", {"REPRISE_QUEUE_PREFIX": own_queues}, own_group=True) as worker:
        me = _identity(worker)

        def both_slots_busy() -> list[str] | None:
            assert worker.alive(), worker.log()
            running = [r.id for r in _runs(env_id) if r.status == "EXECUTING" and r.locked_by == me]
            return running if len(running) == 2 else None

        running = wait_for(both_slots_busy, timeout=60, interval=0.01, what="two runs executing")
        worker.signal_group(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, worker.log()
        log = worker.log(400)
    by_id = {r.id: r for r in _runs(env_id)}
    assert all(by_id[run_id].status == "COMPLETED" for run_id in running), log
    assert all(by_id[run_id].attempt_count == 1 for run_id in running)
    assert "exited with signal" not in log, log
    assert "WorkerLostError" not in log, log
    assert {by_id[run_id].status for run_id in runs} <= {"COMPLETED", "QUEUED"}
