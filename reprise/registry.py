"""The task decorator and the in-process catalogue of task functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reprise.context import TaskContext

TaskFunction = Callable[[Any, "TaskContext"], Any]


@dataclass
class TaskDefinition:
    """A registered task: its id, its function and its default run options."""

    id: str
    fn: TaskFunction
    max_attempts: int | None = None
    ttl: str | int | None = None
    queue: str | None = None
    max_duration: int | None = None
    machine: str | None = None
    description: str = ""
    cron: str | None = None
    timezone: str | None = None
    cron_environments: list[str] | None = None

    def __call__(self, payload: Any, ctx: TaskContext) -> Any:
        return self.fn(payload, ctx)

    def catalogue_entry(self) -> dict[str, Any]:
        entry = {
            "max_attempts": self.max_attempts,
            "ttl": self.ttl,
            "queue": self.queue,
            "max_duration": self.max_duration,
            "machine": self.machine,
            "description": self.description,
            "cron": self.cron,
            "timezone": self.timezone,
            "cron_environments": self.cron_environments,
        }
        return {k: v for k, v in entry.items() if v not in (None, "")}

    def trigger(self, payload: Any = None, **options: Any) -> Any:
        """Trigger this task over the API (uses :func:`reprise.configure`)."""
        from reprise.client import tasks

        return tasks.trigger(self.id, payload, **options)


@dataclass
class Registry:
    tasks: dict[str, TaskDefinition] = field(default_factory=dict)

    def add(self, definition: TaskDefinition) -> None:
        existing = self.tasks.get(definition.id)
        if existing is not None and existing.fn is not definition.fn:
            qualname = getattr(existing.fn, "__qualname__", "?")
            raise ValueError(f"task id {definition.id!r} is already used by {qualname}")
        self.tasks[definition.id] = definition

    def get(self, task_id: str) -> TaskDefinition | None:
        return self.tasks.get(task_id)

    def ids(self) -> list[str]:
        return list(self.tasks)

    def catalogue(self) -> dict[str, dict[str, Any]]:
        return {task_id: d.catalogue_entry() for task_id, d in sorted(self.tasks.items())}


REGISTRY = Registry()

ENVIRONMENTS = ("dev", "staging", "prod")


def task(
    id: str,
    *,
    max_attempts: int | None = None,
    ttl: str | int | None = None,
    queue: str | None = None,
    max_duration: int | None = None,
    machine: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    cron_environments: list[str] | None = None,
) -> Callable[[TaskFunction], TaskDefinition]:
    """Declare a task: ``@task(id="send-email", max_attempts=3)`` on ``fn(payload, ctx)``.

    ``cron`` (with an IANA ``timezone``, default UTC) makes it a scheduled task: each worker
    version that registers it keeps one declarative schedule per environment
    (``cron_environments`` limits them, e.g. ``["prod"]``), and a version without it
    deactivates that schedule. The expression is checked when the version registers.
    """
    if timezone is not None and cron is None:
        raise ValueError(f"task {id!r}: timezone= needs cron=")
    if cron_environments is not None:
        if cron is None:
            raise ValueError(f"task {id!r}: cron_environments= needs cron=")
        unknown = sorted(set(cron_environments) - set(ENVIRONMENTS))
        if unknown or not cron_environments:
            raise ValueError(
                f"task {id!r}: cron_environments must name some of {', '.join(ENVIRONMENTS)}"
            )

    def register(fn: TaskFunction) -> TaskDefinition:
        definition = TaskDefinition(
            id=id,
            fn=fn,
            max_attempts=max_attempts,
            ttl=ttl,
            queue=queue,
            max_duration=max_duration,
            machine=machine,
            description=(fn.__doc__ or "").strip().split("\n")[0],
            cron=cron,
            timezone=timezone,
            cron_environments=sorted(cron_environments) if cron_environments else None,
        )
        REGISTRY.add(definition)
        return definition

    return register
