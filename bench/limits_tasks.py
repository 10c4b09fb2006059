"""Tasks of ``bench/limits.py``, loaded into its workers with ``-I`` beside
``bench.throughput_tasks`` (whose ``bench-noop`` is the unlimited no-op): a no-op whose own
limit is the worker's slots, and two no-ops with one run per ``concurrencyKey``.

``REPRISE_BENCH_SLOTS`` (default 4) is the limited task's ``total``: the bench sets it to the
worker's ``--concurrency`` before the version registers."""

from __future__ import annotations

import os
from typing import Any

from reprise import TaskContext, task

SLOTS = int(os.environ.get("REPRISE_BENCH_SLOTS", "4"))


@task(id="bench-limited", max_attempts=1, concurrency={"total": SLOTS})
def bench_limited(payload: Any, ctx: TaskContext) -> None:
    """A no-op holding its own limit, ``total`` = the worker's slots."""
    return


@task(id="bench-keys-few", max_attempts=1, concurrency={"per_key": 1})
def bench_keys_few(payload: Any, ctx: TaskContext) -> None:
    """One run per ``concurrencyKey`` at a time (the admission-cost figure, few keys)."""
    return


@task(id="bench-keys-many", max_attempts=1, concurrency={"per_key": 1})
def bench_keys_many(payload: Any, ctx: TaskContext) -> None:
    """The same bound on a limit of its own (the admission-cost figure, many keys)."""
    return
