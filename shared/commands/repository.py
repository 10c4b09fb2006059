"""All SQL for commands (the outbox of replay and reschedule)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from shared.commands.models import Command, CommandStatus

PENDING = CommandStatus.PENDING.value


def insert_command(session: Session, command: Command) -> Command:
    session.add(command)
    session.flush()
    return command


def get_command(session: Session, command_id: str) -> Command | None:
    return session.get(Command, command_id)


def lock_command(session: Session, command_id: str) -> Command | None:
    """The command row, locked until the end of the transaction (``FOR UPDATE``).

    A second applier (redelivered message, another worker, a read applying it inline)
    blocks here until the first commits, then sees the outcome and does nothing.
    """
    return session.scalars(
        select(Command)
        .where(Command.id == command_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def record_outcome(
    session: Session,
    command_id: str,
    status: CommandStatus,
    worker: str,
    *,
    result: dict[str, Any] | None = None,
    reason: str | None = None,
) -> Command | None:
    return session.execute(
        update(Command)
        .where(Command.id == command_id, Command.status == PENDING)
        .values(
            status=status.value,
            result=result,
            reason=reason,
            applied_at=func.now(),
            applied_by=worker[:200],
        )
        .returning(Command)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).scalars().first()


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
