"""Tasks of ``bench/throughput.py``, loaded into its workers with ``-I``: the Reprise no-op
task, and the two baselines' Celery tasks (raw no-op, and the DIY job-table task)."""

from __future__ import annotations

import os
from typing import Any

from reprise import TaskContext, task
from reprise_server.workers.app import app

RAW_NOOP = "bench.raw_noop"
DIY_JOB = "bench.diy_job"
DIY_TABLE = "bench_diy_jobs"
CREATE_DIY_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {DIY_TABLE} (id text PRIMARY KEY, status text NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz)"
)
RAW_COUNTER = "bench:raw-noop:done"


@task(id="bench-noop", max_attempts=1)
def bench_noop(payload: Any, ctx: TaskContext) -> None:
    """Does nothing: the run's lifecycle is all there is to measure."""
    return


_clients: dict[str, Any] = {}


def _redis() -> Any:
    if "redis" not in _clients:
        import redis

        _clients["redis"] = redis.Redis.from_url(os.environ["REPRISE_REDIS_URL"])
    return _clients["redis"]


def _postgres() -> Any:
    if _clients.get("pg_pid") != os.getpid():  # one connection per pool process
        import psycopg

        url = os.environ["REPRISE_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
        _clients["pg"] = psycopg.connect(url, autocommit=True)
        _clients["pg_pid"] = os.getpid()
    return _clients["pg"]


@app.task(name=RAW_NOOP)  # type: ignore[untyped-decorator]
def raw_noop(_: str) -> None:
    """The broker's floor: counts itself done (one INCR) so the bench sees the end."""
    _redis().incr(RAW_COUNTER)


@app.task(name=DIY_JOB)  # type: ignore[untyped-decorator]
def diy_job(job_id: str) -> None:
    """What a team writes by hand: mark the job row done."""
    _postgres().execute(
        f"UPDATE {DIY_TABLE} SET status = 'done', finished_at = now() WHERE id = %s", (job_id,)
    )
