"""Demo tasks: one that succeeds, one that fails sometimes, one that sleeps.

Trigger them with the key `reprise dev` prints:

    curl -X POST $URL/api/v1/tasks/hello-world/trigger \\
      -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \\
      -d '{"payload": {"name": "Ada"}}'
"""

from __future__ import annotations

import random
import time
from typing import Any

from reprise import TaskContext, task


@task(id="hello-world", max_attempts=3)
def hello_world(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    """Greets whoever the payload names."""
    name = payload.get("name", "world") if isinstance(payload, dict) else "world"
    ctx.logger.info("greeting %s", name, extra={"greeted": name})  # in the run's log
    return {"message": f"Hello, {name}!", "runId": ctx.run.id, "attempt": ctx.attempt.number}


@task(id="flaky", max_attempts=5)
def flaky(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    """Fails with probability ``failureRate`` (default 0.5) on each attempt."""
    rate = float(payload.get("failureRate", 0.5)) if isinstance(payload, dict) else 0.5
    if random.random() < rate:
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt.number}")
    return {"succeededOnAttempt": ctx.attempt.number}


@task(id="sleepy", max_attempts=1)
def sleepy(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    """Sleeps ``seconds`` (default 5) in small steps, saving a checkpoint each second."""
    seconds = float(payload.get("seconds", 5)) if isinstance(payload, dict) else 5.0
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if int(seconds - (deadline - time.monotonic())) > step:
            step += 1
            ctx.checkpoint({"sleptSeconds": step})
    return {"slept": seconds}
