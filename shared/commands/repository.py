"""All SQL for commands (the outbox of replay and reschedule)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import String, Table, any_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from reprise_server.shared.commands.appliers import LockedCommand
from reprise_server.shared.commands.models import Command, CommandKind, CommandStatus
from reprise_server.shared.db import Detached, Precompiled, all_in
from reprise_server.shared.projects.models import Environment
from reprise_server.shared.runs.models import Run, detached_run

PENDING = CommandStatus.PENDING.value


_COMMANDS = cast(Table, Command.__table__)
# Prebuilt statements: the accept path is hot, and building (and cache-keying) a statement
# per request costs more than running it.
_INSERT = insert(_COMMANDS)
_INSERT_PUBLISHED = insert(_COMMANDS).values(published_at=func.now())


def insert_command(session: Session, values: dict[str, Any], *, published: bool) -> None:
    """Write a command row (``published``: stamped as published now, by the caller's clock)."""
    session.execute(_INSERT_PUBLISHED if published else _INSERT, values)


def insert_commands(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write many command rows in one statement (a bulk batch's applied replays)."""
    session.execute(_INSERT, rows)


def replay_by_request_key(
    session: Session, environment_id: str, run_id: str, request_key: str
) -> Command | None:
    """The latest replay of ``run_id`` accepted for this request key (found through
    ``ix_commands_run``); whether it still answers is the caller's window to decide."""
    return session.scalars(
        select(Command).where(
            Command.run_id == run_id,
            Command.environment_id == environment_id,
            Command.kind == CommandKind.REPLAY.value,
            Command.arguments["requestKey"].astext == request_key,
        ).order_by(Command.created_at.desc()).limit(1)
    ).first()


# Prebuilt: every apply (by a worker, or inline by a read) runs it.
_LOCK_FOR_APPLY = (
    select(Command, Run, Environment)
    .outerjoin(Run, Run.id == Command.run_id)
    .outerjoin(Environment, Environment.id == Command.target_environment_id)
    .where(Command.id == bindparam("command_id"))
    .with_for_update(of=Command)
    .execution_options(populate_existing=True)
)


_RUNS = cast(Table, Run.__table__)
_ENVIRONMENTS = cast(Table, Environment.__table__)
# Below SQLAlchemy (the control process runs it for every message of replays): the
# commands with every column of their source run and target environment.
_LOCK_BATCH_FOR_APPLY = Precompiled(
    select(_COMMANDS, _RUNS, _ENVIRONMENTS)
    .select_from(
        _COMMANDS
        .outerjoin(_RUNS, _RUNS.c.id == _COMMANDS.c.run_id)
        .outerjoin(_ENVIRONMENTS, _ENVIRONMENTS.c.id == _COMMANDS.c.target_environment_id)
    )
    .where(_COMMANDS.c.id == any_(bindparam("command_ids", type_=ARRAY(String))),
           _COMMANDS.c.status == PENDING)
    .order_by(_COMMANDS.c.id)
    .with_for_update(of=_COMMANDS, skip_locked=True)
)
_LOCKED_COLUMNS = list(_LOCK_BATCH_FOR_APPLY.statement.exported_columns)
_DETACHED_COMMAND, _DETACHED_ENVIRONMENT = Detached(Command), Detached(Environment)
_COMMAND_AT = _DETACHED_COMMAND.positions(_LOCKED_COLUMNS)
_RUN_AT = detached_run.positions(_LOCKED_COLUMNS)
_ENVIRONMENT_AT = _DETACHED_ENVIRONMENT.positions(_LOCKED_COLUMNS)
# An outer join that found no row leaves its primary key NULL.
_RUN_ID_AT = dict(_RUN_AT)["id"]
_ENVIRONMENT_ID_AT = dict(_ENVIRONMENT_AT)["id"]


def lock_pending_commands(session: Session, command_ids: list[str]) -> list[LockedCommand]:
    """Those of ``command_ids`` still pending and not locked by another transaction, each
    locked to the end of this one, with its source run and target environment, in one
    round trip (in id order). The three are read-only copies in no session.

    A command another transaction holds (a read applying it inline, another applier) is
    skipped, not waited for: the caller applies it alone afterwards, which blocks until
    that transaction ends and then sees its outcome.
    """
    rows = all_in(session, _LOCK_BATCH_FOR_APPLY, {"command_ids": command_ids})
    return [
        LockedCommand(
            _DETACHED_COMMAND.from_row(row, _COMMAND_AT),
            None if row[_RUN_ID_AT] is None else detached_run.from_row(row, _RUN_AT),
            None if row[_ENVIRONMENT_ID_AT] is None
            else _DETACHED_ENVIRONMENT.from_row(row, _ENVIRONMENT_AT),
        )
        for row in rows
    ]


def still_pending(session: Session, command_ids: list[str]) -> list[str]:
    """Those of ``command_ids`` still pending (read without a lock)."""
    return list(session.scalars(
        select(Command.id).where(Command.id.in_(command_ids), Command.status == PENDING)
        .order_by(Command.id)
    ))


def lock_command_for_apply(session: Session, command_id: str) -> LockedCommand | None:
    """The command row, locked until the end of the transaction (``FOR UPDATE``), with the
    run it was issued against and the environment its effect lands in (not locked), in one
    round trip.

    A second applier (redelivered message, another worker, a read applying it inline)
    blocks here until the first commits, then sees the outcome and does nothing.
    """
    row = session.execute(_LOCK_FOR_APPLY, {"command_id": command_id}).first()
    return LockedCommand(row[0], row[1], row[2]) if row else None


_RECORD_OUTCOMES = (
    update(_COMMANDS)
    .where(_COMMANDS.c.id == bindparam("command_id"), _COMMANDS.c.status == PENDING)
    .values(
        status=bindparam("status"),
        result=bindparam("result", type_=_COMMANDS.c.result.type),
        reason=bindparam("reason"),
        applied_by=bindparam("applied_by"),
        applied_at=func.now(),
    )
)
_RECORD_OUTCOME = _RECORD_OUTCOMES.returning(_COMMANDS.c.applied_at)


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


def record_outcomes(
    session: Session,
    outcomes: list[tuple[str, CommandStatus, dict[str, Any] | None, str | None]],
    worker: str,
) -> None:
    """Decide many pending commands (the caller holds their row locks) in one pipelined
    round trip: ``(command id, status, result, reason)`` each."""
    session.connection().execute(_RECORD_OUTCOMES, [
        {"command_id": command_id, "status": status.value, "result": result, "reason": reason,
         "applied_by": worker[:200]}
        for command_id, status, result, reason in outcomes
    ])


def pending_commands(
    session: Session, environment_id: str, *, run_id: str | None = None, limit: int = 100
) -> list[str]:
    """Pending commands whose effect lands in ``environment_id`` (and on ``run_id`` if
    given), oldest first; served by ``ix_commands_target_pending`` for one run and
    ``ix_commands_target_env_pending`` for the environment."""
    # Only replays: a bulk action's batch is the control process's to apply, never a read's.
    query = select(Command.id).where(
        Command.target_environment_id == environment_id, Command.status == PENDING,
        Command.kind == CommandKind.REPLAY.value,
    )
    if run_id is not None:
        query = query.where(Command.target_run_id == run_id)
    return list(session.scalars(query.order_by(Command.created_at, Command.id).limit(limit)))


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
