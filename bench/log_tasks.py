"""Tasks of ``bench/log_capture.py``: one that logs nothing, one that logs ``count`` lines
through its logger (``bench.logs``, INFO)."""

from __future__ import annotations

import logging
from typing import Any

from reprise import TaskContext, task

LOGGER = logging.getLogger("bench.logs")
LOGGER.setLevel(logging.INFO)


@task(id="bench-log-none", max_attempts=1)
def log_none(payload: Any, ctx: TaskContext) -> Any:
    return None


@task(id="bench-log-lines", max_attempts=1)
def log_lines(payload: Any, ctx: TaskContext) -> Any:
    count = int(payload.get("count", 1000))
    for n in range(count):
        LOGGER.info("processed item %d of %d: status=%s", n, count, "ok")
    return {"logged": count}
