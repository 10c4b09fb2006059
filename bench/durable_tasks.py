"""Tasks of ``bench/durable.py``."""

from __future__ import annotations

import time
from typing import Any

from reprise import TaskContext, task


def _noop() -> None:
    return None


@task(id="bench-steps", max_attempts=1)
def bench_steps(payload: Any, ctx: TaskContext) -> Any:
    """``steps`` no-op steps, then (``wait``) a wait; returns how long the steps took in
    this execution (a resume replays them from the record)."""
    began = time.perf_counter()
    for _ in range(int(payload.get("steps", 0))):
        ctx.step("noop", _noop)
    took = time.perf_counter() - began
    if payload.get("wait"):
        ctx.wait_for(float(payload["wait"]))
    return {"steps_ms": took * 1000, "resumes": ctx.run.resume_count}


@task(id="bench-wait", max_attempts=1)
def bench_wait(payload: Any, ctx: TaskContext) -> Any:
    ctx.wait_for(float(payload.get("wait", 5)))
    return None


@task(id="bench-noop", max_attempts=1)
def bench_noop(payload: Any, ctx: TaskContext) -> Any:
    return None


@task(id="bench-fanout", max_attempts=1)
def bench_fanout(payload: Any, ctx: TaskContext) -> Any:
    ctx.batch_trigger_and_wait([("bench-noop", {}) for _ in range(int(payload["children"]))])
    return None
