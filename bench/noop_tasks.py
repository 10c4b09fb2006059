"""A raw Celery no-op task: the baseline of command apply throughput (same worker, same
Redis, same queue). Loaded into the bench worker with ``celery -A workers.app worker -I``."""

from __future__ import annotations

from reprise_server.workers.app import app

NOOP = "bench.noop"


@app.task(name=NOOP)  # type: ignore[untyped-decorator]
def noop(_: str) -> None:
    return None
