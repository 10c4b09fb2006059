"""Tasks of ``test_admission``: registered by the test as a version of its own project."""

from __future__ import annotations

from typing import Any

from reprise import TaskContext, concurrency_limit, task


@task(id="flow-one-at-a-time", max_attempts=1, concurrency={"total": 1})
def one_at_a_time(payload: Any, ctx: TaskContext) -> None:
    return


@task(id="flow-one-per-key", max_attempts=1, concurrency={"per_key": 1})
def one_per_key(payload: Any, ctx: TaskContext) -> None:
    return


shared = concurrency_limit("flow-shared", total=3, per_key=1)


@task(id="flow-own-and-shared", max_attempts=1, concurrency=[{"total": 2}, shared])
def own_and_shared(payload: Any, ctx: TaskContext) -> None:
    return


@task(id="flow-shared-only", max_attempts=1, concurrency=shared)
def shared_only(payload: Any, ctx: TaskContext) -> None:
    return


@task(id="flow-two-per-key", max_attempts=1, concurrency={"total": 2, "per_key": 1})
def two_per_key(payload: Any, ctx: TaskContext) -> None:
    return
