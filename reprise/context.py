"""What a task function receives as ``ctx``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class RunInfo:
    id: str
    task_identifier: str
    is_replay: bool
    replayed_from: str | None
    tags: list[str]
    is_test: bool
    depth: int
    root_run_id: str | None
    parent_run_id: str | None
    version: str | None
    environment: str
    # Where a replay resumes, when it does not start from the top: the checkpoint whose
    # state is the payload (``resumed_from_checkpoint``, with the run's original payload in
    # ``original_payload``), or the step from which it executes (``resumed_from_step``:
    # the steps before it are answered from the original run's record).
    resumed_from_checkpoint: int | None = None
    resumed_from_step: str | None = None
    original_payload: Any = None
    # Executions of this run that were resumes after a durable wait (0 on the first).
    resume_count: int = 0


class Durable(Protocol):
    """What the worker gives ``ctx`` to run steps and waits (workers/durable.py)."""

    def step(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> Any: ...
    def wait_time(self, seconds: float | None, until: datetime | None) -> None: ...
    def wait_children(self, children: list[tuple[str, Any, dict[str, Any]]],
                      batch: bool) -> list[Any]: ...
    def wait_token(self, token_id: str, timeout: float | datetime | str | None) -> Any: ...


@dataclass(frozen=True)
class AttemptInfo:
    id: str
    number: int


@dataclass
class TaskContext:
    """``ctx``: the run and attempt being executed, and what a task can do from inside."""

    run: RunInfo
    attempt: AttemptInfo
    metadata: dict[str, Any] = field(default_factory=dict)
    _checkpoint: Callable[[Any], int] | None = None
    _trigger: Callable[[str, Any, dict[str, Any]], str] | None = None
    _durable: Durable | None = None

    @property
    def logger(self) -> logging.Logger:
        """The task's logger (``reprise.task.<task id>``), a standard :class:`logging.Logger`:
        on a worker, what it logs during the attempt is captured into the run's log (as is
        any other logger's output, and what the task prints). Its level is the logging
        configuration's (the worker's: INFO); ``ctx.logger.setLevel(logging.DEBUG)`` lets
        debug lines through."""
        return logging.getLogger(f"reprise.task.{self.run.task_identifier}")

    def checkpoint(self, state: Any) -> int:
        """Save ``state`` as the run's next numbered checkpoint; returns its number."""
        if self._checkpoint is None:
            raise RuntimeError("checkpoints are only available inside a running task")
        return self._checkpoint(state)

    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> str:
        """Trigger a child run of this run; returns the child's id."""
        if self._trigger is None:
            raise RuntimeError("triggering children is only available inside a running task")
        return self._trigger(task_id, payload, options)

    # --- durable steps and waits (docs/durable.md) ---------------------------------------

    def _engine(self) -> Durable:
        if self._durable is None:
            raise RuntimeError("durable steps and waits are only available inside a running task")
        return self._durable

    def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` (sync or async) at most once for this run, and
        return its result: JSON, recorded. A later execution of the run (a resume after a
        wait, a retry, a replay from a later step) gets the recorded result without
        calling ``fn``; a recorded error is raised again as :class:`reprise.errors.StepFailed`
        (a retry of the run runs a failed step again). Steps are identified by name and
        the order of calls; a step cut by a crash runs again (at least once)."""
        return self._engine().step(name, fn, args, kwargs)

    def wait_for(self, duration: float | str) -> None:
        """Wait ``duration`` (seconds, or ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``): the
        execution ends here (no worker slot, no concurrency slot is held) and the run is
        queued again when the time has come; the function then runs from the top, its
        steps and waits answered from the record."""
        if isinstance(duration, str):
            self._engine().wait_time(_seconds(duration), None)
        else:
            self._engine().wait_time(float(duration), None)

    def wait_until(self, moment: datetime) -> None:
        """Wait until ``moment`` (an aware datetime; a naive one is taken as UTC), as
        :meth:`wait_for`."""
        self._engine().wait_time(None, moment)

    def trigger_and_wait(self, task_id: str, payload: Any = None, **options: Any) -> Any:
        """Trigger a child run and wait for it to end (holding no slot meanwhile): its
        output, or :class:`reprise.errors.ChildRunFailed` with its status and error."""
        (result,) = self._engine().wait_children([(task_id, payload, options)], batch=False)
        return _child_output(result)

    def batch_trigger_and_wait(self, items: Iterable[Any]) -> list[Any]:
        """Trigger a child run per item (``{"task": id, "payload": …, "options": {…}}``, or
        a ``(task_id, payload)`` pair) and wait for all of them: one result per item, in
        order, each the child's output or a :class:`reprise.errors.ChildRunFailed`
        (returned, not raised: one failed child does not hide the others' results)."""
        children = [_child_of(item) for item in items]
        if not children:
            return []
        return [
            _child_result(result)
            for result in self._engine().wait_children(children, batch=True)
        ]

    def wait_for_token(
        self, token: str | Any, *, timeout: float | datetime | str | None = None
    ) -> Any:
        """Wait until a waitpoint token (its id, or the object
        ``reprise.waitpoints.create_token`` returned) is completed, and return the data it
        was completed with; :class:`reprise.errors.WaitTimeoutError` if it timed out (its
        own timeout, or ``timeout`` here: seconds, ``"1h"``, or a datetime)."""
        token_id = token if isinstance(token, str) else str(token.id)
        return self._engine().wait_token(token_id, timeout)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(duration: str) -> float:
    """``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1w"`` (or a bare number of seconds)."""
    text = duration.strip().lower()
    try:
        if text and text[-1] in _UNITS:
            return float(text[:-1]) * _UNITS[text[-1]]
        return float(text)
    except ValueError:
        raise ValueError(
            f"duration {duration!r}: expected seconds or a number with s, m, h, d or w"
        ) from None


def _child_of(item: Any) -> tuple[str, Any, dict[str, Any]]:
    if isinstance(item, tuple) and len(item) == 2:
        return str(item[0]), item[1], {}
    if isinstance(item, dict) and "task" in item:
        return str(item["task"]), item.get("payload"), dict(item.get("options") or {})
    raise TypeError(
        "batch_trigger_and_wait items are {'task': id, 'payload': ..., 'options': {...}} "
        f"or (task_id, payload) pairs, not {item!r}"
    )


def _child_result(result: dict[str, Any]) -> Any:
    from reprise.errors import ChildRunFailed

    if result.get("status") == "COMPLETED":
        return result.get("output")
    return ChildRunFailed(str(result.get("id")), str(result.get("status")), result.get("error"))


def _child_output(result: dict[str, Any]) -> Any:
    value = _child_result(result)
    if isinstance(value, Exception):
        raise value
    return value
