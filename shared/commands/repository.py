"""All SQL for commands (the outbox of replay and reschedule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from shared.commands.models import Command, CommandStatus
from shared.projects.models import ApiKey, Environment, VersionTask
from shared.runs.models import Run

PENDING = CommandStatus.PENDING.value


_COMMANDS = cast(Table, Command.__table__)
# Prebuilt statements: the accept path is hot, and building (and cache-keying) a statement
# per request costs more than running it.
_INSERT = insert(_COMMANDS)
_INSERT_PUBLISHED = insert(_COMMANDS).values(published_at=func.now())


def insert_command(session: Session, values: dict[str, Any], *, published: bool) -> None:
    """Write a command row (``published``: stamped as published now, by the caller's clock)."""
    session.execute(_INSERT_PUBLISHED if published else _INSERT, values)


@dataclass(frozen=True)
class CallerRun:
    """The environment a secret key belongs to and a run of that environment."""

    project_id: str
    environment_id: str
    environment_slug: str
    run_id: str
    task_identifier: str
    status: str
    now: datetime
    task_known: bool


def _caller_and_run_statement(*, lock: bool) -> Select[Any]:
    keys, envs = cast(Table, ApiKey.__table__), cast(Table, Environment.__table__)
    runs, tasks = cast(Table, Run.__table__), cast(Table, VersionTask.__table__)
    registering = envs.alias("registering")
    task_known = exists(
        select(1)
        .select_from(tasks.join(registering, registering.c.id == tasks.c.environment_id))
        .where(
            registering.c.project_id == envs.c.project_id,
            tasks.c.task_identifier == runs.c.task_identifier,
        )
    )
    stmt = (
        select(envs.c.project_id, envs.c.id, envs.c.slug, runs.c.id, runs.c.task_identifier,
               runs.c.status, func.now(), task_known)
        .select_from(
            keys.join(envs, envs.c.id == keys.c.environment_id).join(
                runs, and_(runs.c.environment_id == envs.c.id, runs.c.id == bindparam("run_id"))
            )
        )
        .where(keys.c.key_hash == bindparam("key_hash"), keys.c.revoked_at.is_(None))
    )
    return stmt.with_for_update(of=runs) if lock else stmt


_CALLER_AND_RUN = _caller_and_run_statement(lock=False)
_CALLER_AND_LOCKED_RUN = _caller_and_run_statement(lock=True)


def find_caller_and_run(
    session: Session, key_hash: str, run_id: str, *, lock: bool = False
) -> CallerRun | None:
    """The accept path's one round trip: the active key's environment, the run of that
    environment (locked ``FOR UPDATE`` with ``lock``), whether any version of the project
    registers the run's task, and the database clock. None if the key is unknown or
    revoked, or the run is not in its environment (the caller tells which apart).
    """
    stmt = _CALLER_AND_LOCKED_RUN if lock else _CALLER_AND_RUN
    row = session.execute(stmt, {"key_hash": key_hash, "run_id": run_id}).first()
    return CallerRun(*row) if row else None


def replay_by_request_key(
    session: Session, environment_id: str, run_id: str, request_key: str, window: timedelta
) -> tuple[str, str] | None:
    """``(command id, new run id)`` of a replay of ``run_id`` accepted for the same request
    key within ``window`` (found through ``ix_commands_run``)."""
    row = session.execute(
        select(Command.id, Command.target_run_id).where(
            Command.run_id == run_id,
            Command.environment_id == environment_id,
            Command.kind == "replay",
            Command.created_at > func.now() - window,
            Command.arguments["requestKey"].astext == request_key,
        ).limit(1)
    ).first()
    return (row[0], row[1]) if row is not None and row[1] else None


def get_command(session: Session, command_id: str) -> Command | None:
    return session.get(Command, command_id)


def lock_command_for_apply(
    session: Session, command_id: str
) -> tuple[Command, Run | None, Environment | None] | None:
    """The command row, locked until the end of the transaction (``FOR UPDATE``), with the
    run it was issued against and the environment its effect lands in (not locked), in one
    round trip.

    A second applier (redelivered message, another worker, a read applying it inline)
    blocks here until the first commits, then sees the outcome and does nothing.
    """
    row = session.execute(
        select(Command, Run, Environment)
        .outerjoin(Run, Run.id == Command.run_id)
        .outerjoin(Environment, Environment.id == Command.target_environment_id)
        .where(Command.id == command_id)
        .with_for_update(of=Command)
        .execution_options(populate_existing=True)
    ).first()
    return (row[0], row[1], row[2]) if row else None


_RECORD_OUTCOME = (
    update(_COMMANDS)
    .where(_COMMANDS.c.id == bindparam("command_id"), _COMMANDS.c.status == PENDING)
    .values(
        status=bindparam("status"),
        result=bindparam("result", type_=_COMMANDS.c.result.type),
        reason=bindparam("reason"),
        applied_by=bindparam("applied_by"),
        applied_at=func.now(),
    )
    .returning(_COMMANDS.c.applied_at)
)


def record_outcome(
    session: Session,
    command: Command,
    status: CommandStatus,
    worker: str,
    *,
    result: dict[str, Any] | None = None,
    reason: str | None = None,
) -> Command:
    """Decide a pending command (the caller holds its row lock); returns it, updated."""
    applied_at = session.execute(
        _RECORD_OUTCOME,
        {"command_id": command.id, "status": status.value, "result": result,
         "reason": reason, "applied_by": worker[:200]},
    ).scalar_one()
    # The row changed behind the ORM's back: reflect it on the loaded object without
    # marking it dirty (which would flush the same UPDATE again at commit).
    for name, value in (("status", status.value), ("result", result), ("reason", reason),
                        ("applied_at", applied_at), ("applied_by", worker[:200])):
        set_committed_value(command, name, value)
    return command


def pending_for_target_run(session: Session, run_id: str, limit: int = 100) -> list[str]:
    """Pending commands whose effect lands on ``run_id``, oldest first."""
    return list(
        session.scalars(
            select(Command.id)
            .where(Command.target_run_id == run_id, Command.status == PENDING)
            .order_by(Command.created_at, Command.id)
            .limit(limit)
        )
    )


def pending_for_environment(session: Session, environment_id: str, limit: int) -> list[str]:
    """Pending commands whose effect lands in ``environment_id``, oldest first."""
    return list(
        session.scalars(
            select(Command.id)
            .where(Command.target_environment_id == environment_id, Command.status == PENDING)
            .order_by(Command.created_at, Command.id)
            .limit(limit)
        )
    )


def claim_for_relay(session: Session, quiet: timedelta, limit: int) -> list[str]:
    """Pending commands not published for ``quiet``: mark them published now and return them.

    ``FOR UPDATE SKIP LOCKED`` plus bumping ``published_at`` in the same statement means two
    beats running the sweep at once never republish the same command in one interval.
    """
    stale = (
        select(Command.id)
        .where(
            Command.status == PENDING,
            func.coalesce(Command.published_at, Command.created_at) < func.now() - quiet,
        )
        .order_by(Command.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return list(
        session.scalars(
            update(Command)
            .where(Command.id.in_(stale), Command.status == PENDING)
            .values(published_at=func.now(), publish_count=Command.publish_count + 1)
            .returning(Command.id)
            .execution_options(synchronize_session=False)
        )
    )


def commands_of_run(session: Session, run_id: str, limit: int = 100) -> list[Command]:
    """Commands issued against a run, oldest first."""
    return list(
        session.scalars(
            select(Command)
            .where(Command.run_id == run_id)
            .order_by(Command.created_at, Command.id)
            .limit(limit)
        )
    )


def visible_command(session: Session, environment_id: str, command_id: str) -> Command | None:
    """A command issued from, or landing in, the environment."""
    return session.scalars(
        select(Command).where(
            Command.id == command_id,
            or_(
                Command.environment_id == environment_id,
                Command.target_environment_id == environment_id,
            ),
        )
    ).first()
