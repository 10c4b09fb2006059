"""The task the chaos scenarios run (``REPRISE_TASK_MODULES=tests.support.chaos_tasks``)."""

from __future__ import annotations

import time
from typing import Any

from reprise import TaskContext, task


@task(id="chaos-sleep", max_attempts=3)
def chaos_sleep(payload: Any, ctx: TaskContext) -> Any:
    """Sleeps ``seconds`` in short steps (so a cancel or an interrupt lands promptly)."""
    seconds = float(payload.get("seconds", 0.2)) if isinstance(payload, dict) else 0.2
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))
    return {"slept": seconds, "attempt": ctx.attempt.number}


def _ledger(path: str, line: str) -> str:
    import fcntl
    from pathlib import Path

    with Path(path).open("a") as ledger:
        fcntl.flock(ledger, fcntl.LOCK_EX)
        ledger.write(line + "\n")
    return line


@task(id="chaos-durable", max_attempts=3)
def chaos_durable(payload: Any, ctx: TaskContext) -> Any:
    """Step a, a wait of ``wait`` seconds, step b: each step appends ``<run> <step>`` to
    the ``ledger`` file when its function really runs."""
    ctx.step("a", _ledger, payload["ledger"], f"{ctx.run.id} a")
    ctx.wait_for(float(payload.get("wait", 5)))
    ctx.step("b", _ledger, payload["ledger"], f"{ctx.run.id} b")
    return {"resumes": ctx.run.resume_count}
