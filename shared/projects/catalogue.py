"""What the registered worker versions offer a task: the reads that creating, claiming
and scheduling a run make (an environment's current version, the task's registered
options, a locked version's catalogue). Registering a version is :mod:`shared.versions`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by
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
        select(func.array_agg(aggregate_order_by(Queue.name, Queue.name)))
        .where(Queue.environment_id == bindparam("environment_id"), Queue.paused)
        .scalar_subquery()
    )
    return (
        select(func.now().label("now"), Environment.default_ttl_seconds,
               task.c.version, task.c.options, paused.label("paused"))
        .select_from(Environment)
        .outerjoin(task, true())
        .where(Environment.id == bindparam("environment_id"))
    )


# Prebuilt: every trigger runs it, and building it costs more than running it.
CREATION_CONTEXT = _creation_context_statement()


# The creation context each (environment, task) had when this process last read it: what
# a run INSERT that reads the context itself expects to find (:func:`expected_context`).
# Never trusted: a guess the INSERT checks, which saves a round trip when it is right.
_LAST_SEEN: dict[tuple[str, str], CreationContext] = {}
_LAST_SEEN_MAX = 4096

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
        CREATION_CONTEXT, {"environment_id": environment_id, "task_identifier": task_identifier}
    ).one()
    version = (row.version, row.options) if row.version is not None else None
    context = CreationContext(row.now, row.default_ttl_seconds, version,
                              frozenset(row.paused or ()))
    if len(_LAST_SEEN) >= _LAST_SEEN_MAX:
        _LAST_SEEN.clear()
    _LAST_SEEN[(environment_id, task_identifier)] = context
    return context


def expected_context(
    session: Session, environment_id: str, task_identifier: str
) -> CreationContext | None:
    """The context the task's next run will probably be created in: the one this process
    last read. A run built from it is inserted by a statement that reads the context again
    and inserts only if it is the same (:func:`context_guard`); a version registered, a
    queue paused or a TTL changed since makes it insert nothing, and the caller reads the
    context and builds the run again: it costs only the round trip otherwise saved. None
    inside :func:`contexts_shared` (its block reads once anyway) and for a task this
    process has not created a run of yet."""
    if _MEMO in session.info:
        return None
    return _LAST_SEEN.get((environment_id, task_identifier))


def context_guard(context: Any) -> ColumnElement[bool]:
    """True where ``context`` (:data:`CREATION_CONTEXT` as a subquery) is the one of
    :func:`guard_params`: everything a run's values were computed from, compared whole."""
    return and_(
        context.c.default_ttl_seconds.is_not_distinct_from(
            bindparam("expected_ttl", type_=Integer)),
        context.c.version.is_not_distinct_from(bindparam("expected_version", type_=String)),
        context.c.options.is_not_distinct_from(
            bindparam("expected_options", type_=JSONB(none_as_null=True))),
        func.coalesce(context.c.paused, literal([], ARRAY(String)))
        == bindparam("expected_paused", type_=ARRAY(String)),
    )


def guard_params(context: CreationContext) -> dict[str, Any]:
    version, options = context.version or (None, None)
    return {
        "expected_ttl": context.default_ttl_seconds,
        "expected_version": version,
        "expected_options": options,
        "expected_paused": sorted(context.paused_queues),
    }


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
