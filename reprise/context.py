"""What a task function receives as ``ctx``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


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
