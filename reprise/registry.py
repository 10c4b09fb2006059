"""The task decorator, concurrency limits, and the in-process catalogue of task functions."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from reprise.context import TaskContext

TaskFunction = Callable[[Any, "TaskContext"], Any]

_LIMIT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,122}$")
MAX_BOUND = 100_000


def _bound(value: int | None, what: str) -> int | None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BOUND
    ):
        raise ValueError(f"{what} must be an integer from 0 to {MAX_BOUND} (got {value!r})")
    return value


@dataclass(frozen=True)
class Concurrency:
    """A task's own limit (``@task(concurrency=Concurrency(total=5, per_key=1))``, or the
    dict ``{"total": 5, "per_key": 1}``), named ``task/<taskId>``: ``total`` caps the
    task's runs executing at once, ``per_key`` each ``concurrencyKey``'s."""

    total: int | None = None
    per_key: int | None = None

    def __post_init__(self) -> None:
        _bound(self.total, "total")
        _bound(self.per_key, "per_key")


@dataclass(frozen=True)
class ConcurrencyLimit:
    """A named limit several tasks share: see :func:`concurrency_limit`."""

    name: str
    total: int | None = None
    per_key: int | None = None


def concurrency_limit(
    name: str, *, total: int | None = None, per_key: int | None = None
) -> ConcurrencyLimit:
    """Declare a named concurrency limit shared by the tasks that hold it
    (``@task(concurrency=limit)``, or a list of at most two): ``total`` caps every run
    holding it, ``per_key`` each ``concurrencyKey`` pool (runs without a key share one).
    It is registered with the worker version, like the tasks."""
    if not isinstance(name, str) or not _LIMIT_NAME.match(name):
        raise ValueError(
            "a concurrency limit's name is 1-122 letters, digits, underscores or hyphens "
            f"(got {name!r})"
        )
    return ConcurrencyLimit(name, _bound(total, "total"), _bound(per_key, "per_key"))


ConcurrencySpec: TypeAlias = (
    "Concurrency | ConcurrencyLimit | dict[str, int | None] "
    "| Sequence[Concurrency | ConcurrencyLimit | dict[str, int | None]]"
)


def _limits_of(task_id: str, spec: Any) -> list[dict[str, Any]]:
    """The limit declarations ``@task(concurrency=spec)`` makes for ``task_id``."""
    if spec is None:
        return []
    items = list(spec) if isinstance(spec, list | tuple) else [spec]
    declared: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            unknown = sorted(set(item) - {"total", "per_key"})
            if unknown:
                raise ValueError(
                    f"task {task_id!r}: unknown concurrency field {unknown[0]!r} "
                    "(a task's own limit is {'total': n, 'per_key': n})"
                )
            item = Concurrency(item.get("total"), item.get("per_key"))
        if isinstance(item, Concurrency):
            declared.append({"name": f"task/{task_id}", "total": item.total,
                             "per_key": item.per_key})
        elif isinstance(item, ConcurrencyLimit):
            declared.append({"name": item.name, "total": item.total, "per_key": item.per_key})
        else:
            raise ValueError(
                f"task {task_id!r}: concurrency= takes a dict, Concurrency(...) or "
                f"concurrency_limit(...) (got {item!r})"
            )
    names = [d["name"] for d in declared]
    if len(set(names)) != len(names):
        raise ValueError(f"task {task_id!r}: a concurrency limit is named twice")
    if sum(1 for n in names if not n.startswith("task/")) > 2:
        raise ValueError(f"task {task_id!r}: at most two named concurrency limits")
    return declared


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
    concurrency: list[dict[str, Any]] = field(default_factory=list)

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
            "concurrency": self.concurrency,
        }
        return {k: v for k, v in entry.items() if v not in (None, "", [])}

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
    concurrency: ConcurrencySpec | None = None,
) -> Callable[[TaskFunction], TaskDefinition]:
    """Declare a task: ``@task(id="send-email", max_attempts=3)`` on ``fn(payload, ctx)``.

    ``cron`` (with an IANA ``timezone``, default UTC) makes it a scheduled task: each worker
    version that registers it keeps one declarative schedule per environment
    (``cron_environments`` limits them, e.g. ``["prod"]``), and a version without it
    deactivates that schedule. The expression is checked when the version registers.

    ``concurrency`` caps how many of its runs execute at once, across every worker: a
    dict or :class:`Concurrency` for the task's own limit (``task/<id>``), one or two
    named limits from :func:`concurrency_limit`, or a list of both. A run that would
    exceed a bound waits in Postgres, unpublished, until a slot frees.
    """
    limits = _limits_of(id, concurrency)
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
            concurrency=limits,
        )
        REGISTRY.add(definition)
        return definition

    return register
