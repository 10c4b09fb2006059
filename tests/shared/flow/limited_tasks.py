"""Tasks of ``test_admission``: registered by the test as a version of its own project."""

from __future__ import annotations

from typing import Any

from reprise import TaskContext, task


@task(id="flow-one-at-a-time", max_attempts=1, concurrency={"total": 1})
def one_at_a_time(payload: Any, ctx: TaskContext) -> None:
    return


@task(id="flow-one-per-key", max_attempts=1, concurrency={"per_key": 1})
def one_per_key(payload: Any, ctx: TaskContext) -> None:
    return
