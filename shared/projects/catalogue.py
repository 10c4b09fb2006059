"""What the registered worker versions offer a task: the reads that creating, claiming
and scheduling a run make (an environment's current version, the task's registered
options, a locked version's catalogue). Registering a version is :mod:`shared.versions`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, true
from sqlalchemy.orm import Session

from reprise_server.shared.flow.models import Queue
from reprise_server.shared.projects.models import Environment, VersionTask, WorkerVersion


def current_version_with_task(
    session: Session, environment_id: str, task_identifier: str
) -> tuple[str, dict[str, Any]] | None:
    """The newest registered version of the environment, if its catalogue has the task."""
    latest = (
        select(WorkerVersion.id, WorkerVersion.version)
        .where(WorkerVersion.environment_id == environment_id)
        .order_by(WorkerVersion.registered_at.desc())
        .limit(1)
        .subquery()
    )
    row = session.execute(
        select(latest.c.version, VersionTask.options).join(
            VersionTask,
            (VersionTask.worker_version_id == latest.c.id)
            & (VersionTask.task_identifier == task_identifier),
        )
    ).first()
    return (row[0], row[1]) if row else None


@dataclass(frozen=True)
class CreationContext:
    """What creating a run in an environment needs, read in one round trip: the database
    clock, the environment's default TTL and, if the environment's current version has
    the task, that version and the task's registered options."""

    now: datetime
    default_ttl_seconds: int | None
    version: tuple[str, dict[str, Any]] | None
    # The environment's paused queues (flow control: a run entering one is held back).
    paused_queues: frozenset[str] = frozenset()


def _creation_context_statement() -> Select[Any]:
    latest = (
        select(WorkerVersion.id, WorkerVersion.version)
        .where(WorkerVersion.environment_id == bindparam("environment_id"))
        .order_by(WorkerVersion.registered_at.desc())
        .limit(1)
        .subquery()
    )
    task = (
        select(latest.c.version, VersionTask.options)
        .join(
            VersionTask,
            (VersionTask.worker_version_id == latest.c.id)
            & (VersionTask.task_identifier == bindparam("task_identifier")),
        )
        .subquery()
    )
    paused = (
        select(func.array_agg(Queue.name))
        .where(Queue.environment_id == bindparam("environment_id"), Queue.paused)
        .scalar_subquery()
    )
    return (
        select(func.now(), Environment.default_ttl_seconds, task.c.version, task.c.options,
               paused)
        .select_from(Environment)
        .outerjoin(task, true())
        .where(Environment.id == bindparam("environment_id"))
    )


# Prebuilt: every trigger runs it, and building it costs more than running it.
_CREATION_CONTEXT = _creation_context_statement()


_MEMO = "reprise.creation_contexts"


@contextmanager
def contexts_shared(session: Session) -> Iterator[None]:
    """Within the block, runs created in the session's transaction for the same task and
    environment share one read of their creation context (a batch of commands creating
    many runs): the transaction's clock is one, and nothing in the block registers a
    version or pauses a queue."""
    session.info[_MEMO] = {}
    try:
        yield
    finally:
        del session.info[_MEMO]


def creation_context(session: Session, environment_id: str, task_identifier: str) -> CreationContext:
    memo = session.info.get(_MEMO)
    if memo is None:
        return _read_creation_context(session, environment_id, task_identifier)
    key = (environment_id, task_identifier)
    if key not in memo:
        memo[key] = _read_creation_context(session, environment_id, task_identifier)
    return memo[key]  # type: ignore[no-any-return]


def _read_creation_context(
    session: Session, environment_id: str, task_identifier: str
) -> CreationContext:
    row = session.connection().execute(
        _CREATION_CONTEXT, {"environment_id": environment_id, "task_identifier": task_identifier}
    ).one()
    version = (row[2], row[3]) if row[2] is not None else None
    return CreationContext(row[0], row[1], version, frozenset(row[4] or ()))


def task_known_in_project(session: Session, project_id: str, task_identifier: str) -> bool:
    """Whether any version registered in any environment of the project has this task."""
    return (
        session.execute(
            select(VersionTask.task_identifier)
            .join(Environment, Environment.id == VersionTask.environment_id)
            .where(
                Environment.project_id == project_id,
                VersionTask.task_identifier == task_identifier,
            )
            .limit(1)
        ).first()
        is not None
    )


def version_task_options(
    session: Session, environment_id: str, version: str, task_identifier: str
) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``version`` is registered in the environment, and the task's options in its
    catalogue (None if the catalogue lacks the task)."""
    row = session.execute(
        select(WorkerVersion.id, VersionTask.options)
        .outerjoin(
            VersionTask,
            (VersionTask.worker_version_id == WorkerVersion.id)
            & (VersionTask.task_identifier == task_identifier),
        )
        .where(WorkerVersion.environment_id == environment_id, WorkerVersion.version == version)
    ).first()
    if row is None:
        return False, None
    return True, (dict(row[1]) if row[1] is not None else None)
