"""Durable steps and waits inside one execution of a run: ``ctx.step`` and the waits.

The run's record (shared.durable.service) is read once, at the first step or wait the
execution reaches; every later call walks it in order. What is recorded is answered from
it; what is not is done and recorded, each in its own short transaction. A wait that is
not over raises :class:`RunSuspended`, which unwinds the task function (a BaseException:
a task's ``except Exception`` does not catch it); the execution then ends the attempt
with the run WAITING (shared.runs.attempts.finish_attempt).
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from reprise.errors import NonDeterminismError, StepFailed, WaitTimeoutError
from reprise_server.shared.durable import service as durable
from reprise_server.shared.durable import waits
from reprise_server.shared.durable.service import ChildSpec, WaitSpec
from reprise_server.shared.durable.waits import Entry
from reprise_server.shared.durations import parse_duration
from reprise_server.shared.packets.service import decoded_packet, load_packet
from reprise_server.shared.payloads import STORE
from reprise_server.shared.runs import attempts
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.schemas import TriggerOptions

T = TypeVar("T")
InTransaction = Callable[[Callable[[Session], Any], str], Any]


class RunSuspended(BaseException):
    """Unwinds a task function at a wait that is not over (the run waits; the execution
    ends). ``entry`` is the recorded wait."""

    def __init__(self, entry: Entry) -> None:
        super().__init__(f"waiting at {entry.name!r}")
        self.entry = entry


class NonDeterminism(BaseException):
    """Raised where the code departs from its run's record: the run fails, unretried. A
    BaseException so that a task's ``except Exception`` cannot turn it into a wrong answer."""

    def __init__(self, error: NonDeterminismError) -> None:
        super().__init__(str(error))
        self.error = error


def error_of(exc: BaseException) -> dict[str, Any]:
    return {
        "message": str(exc) or type(exc).__name__,
        "name": type(exc).__name__,
        "stackTrace": "".join(traceback.format_exception(exc))[-8000:],
    }


class DurableExecution:
    """The durable half of a task's ``ctx`` for one execution (``reprise.context.Durable``)."""

    def __init__(self, run: Run, attempt_number: int, in_transaction: InTransaction) -> None:
        self.run = run
        self.attempt_number = attempt_number
        self._tx = in_transaction
        self._record: list[Entry] | None = None
        self._position = 0

    # --- the record ---------------------------------------------------------------------

    def _next(self, kind: str, name: str) -> Entry | None:
        """The recorded entry at this call's position (checked to be this call), or None
        when the execution is past the record."""
        if self._record is None:
            self._record = self._tx(lambda s: durable.record_of(s, self.run.id), "read record")
        position = self._position
        self._position += 1
        if position >= len(self._record):
            return None
        entry = self._record[position]
        if (entry.kind, entry.name) != (kind, name):
            raise NonDeterminism(NonDeterminismError(
                f"call {position + 1} of run {self.run.id} is {kind} {name!r}, but the run "
                f"recorded {entry.kind} {entry.name!r} there: the task no longer makes the "
                f"calls its run recorded, in the same order"
            ))
        return entry

    def _append(self, entry: Entry) -> None:
        assert self._record is not None
        self._record.append(entry)

    # --- steps --------------------------------------------------------------------------

    def step(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any:
        name = _checked_name(name)
        entry = self._next(waits.STEP, name)
        if entry is None:
            position = self._position - 1
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = _await(value)
            except Exception as exc:
                error = error_of(exc)
                self._append(self._tx(lambda s: durable.record_step(
                    s, self.run, position, name, self.attempt_number, error=error,
                ), f"record step {name}"))
                raise
            entry = self._tx(lambda s: durable.record_step(
                s, self.run, position, name, self.attempt_number, output=value,
            ), f"record step {name}")
            self._append(entry)
            if entry.status == waits.COMPLETED and entry.output is value:
                return value  # recorded by this call (a large result is in a packet now)
        if entry.status == waits.FAILED:
            raise StepFailed(name, entry.error or {})
        if entry.detail and "packet" in entry.detail:
            recorded = entry
            return self._tx(lambda s: durable.step_output(s, self.run.environment_id, recorded),
                            "load step result")
        return entry.output

    # --- waits --------------------------------------------------------------------------

    def _wait(self, name: str, spec: Callable[[], WaitSpec]) -> Entry:
        """Reach the wait ``name``: begin it if it is past the record, settle it if it is
        recorded but not over, and suspend the run if it still is not."""
        entry = self._next(waits.WAIT, name)
        if entry is None:
            position = self._position - 1
            wait = spec()
            entry = self._tx(lambda s: durable.begin_wait(
                s, self.run, position, name, self.attempt_number, wait, _trigger_child,
            ), f"begin wait {name}")
            self._append(entry)
        if entry.status == waits.WAITING:
            waiting = entry
            settled = self._tx(lambda s: durable.settle(s, self.run.id, waiting), "settle wait")
            if settled.status == waits.WAITING:
                raise RunSuspended(settled)
            entry = settled
        return entry

    def wait_time(self, seconds: float | None, until: datetime | None) -> None:
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if seconds is not None and seconds <= 0:
            return
        self._wait("wait", lambda: WaitSpec("datetime", seconds=seconds, until=until))

    def wait_children(self, children: list[tuple[str, Any, dict[str, Any]]],
                      batch: bool) -> list[Any]:
        for _, _, options in children:
            TriggerOptions.model_validate(options)  # refused before anything is recorded
        name = "batch_trigger_and_wait" if batch else f"trigger_and_wait:{children[0][0]}"
        entry = self._wait(name, lambda: WaitSpec(
            "run", children=[ChildSpec(t, p, o) for t, p, o in children], batch=batch,
        ))
        results = list((entry.output or {}).get("runs", []))
        return [self._with_output(result) for result in results]

    def _with_output(self, result: dict[str, Any]) -> dict[str, Any]:
        """A child's offloaded output (application/store) read from its packet."""
        if result.get("outputType") != STORE or not isinstance(result.get("output"), str):
            return result
        path = result["output"]
        value = self._tx(lambda s: decoded_packet(
            load_packet(s, self.run.environment_id, path)), "load child output")
        return {**result, "output": value}

    def wait_token(self, token_id: str, timeout: float | datetime | str | None) -> Any:
        seconds: float | None = None
        until: datetime | None = None
        if isinstance(timeout, datetime):
            until = timeout if timeout.tzinfo else timeout.replace(tzinfo=UTC)
        elif isinstance(timeout, str):
            seconds = parse_duration(timeout)
        elif timeout is not None:
            seconds = float(timeout)
        entry = self._wait(f"wait_for_token:{token_id}", lambda: WaitSpec(
            "token", token=token_id, seconds=seconds, until=until,
        ))
        answer = entry.output or {}
        if not answer.get("ok"):
            raise WaitTimeoutError(token_id)
        return answer.get("output")


def _trigger_child(session: Session, parent: Run, child: ChildSpec, waitpoint_id: str) -> str:
    return attempts.trigger_child(
        session, parent, child.task_id, child.payload,
        TriggerOptions.model_validate(child.options), waitpoint_id=waitpoint_id,
    )


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError("a step's name is a non-empty string of at most 200 characters")
    return name


def _await(value: Any) -> Any:
    """An async step's result. In an ``async def`` task (a loop already runs in this
    thread), the coroutine runs on a loop of its own in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(value))
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _awaited(value)).result()


async def _awaited(value: Any) -> Any:
    return await value
