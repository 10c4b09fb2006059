from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class CommandKind(StrEnum):
    REPLAY = "replay"
    RESCHEDULE = "reschedule"
    # One batch of a bulk action (shared.bulk.batches); ``run_id`` names the action.
    BULK = "bulk"


class CommandStatus(StrEnum):
    PENDING = "PENDING"
    APPLIED = "APPLIED"
    REJECTED = "REJECTED"


class Command(Base):
    """An accepted replay or reschedule: written in the request's transaction (the outbox).

    ``run_id``/``environment_id`` name the run the command was issued against and the
    caller's environment; ``target_run_id``/``target_environment_id`` name the run the
    command's effect lands on (the new run of a replay, the run itself for a reschedule),
    which is what reads look up to apply pending commands inline (read-your-writes).
    """

    __tablename__ = "commands"
    __table_args__ = (
        # The relay sweep: commands still pending, oldest first.
        Index("ix_commands_pending", "created_at", postgresql_where=text("status = 'PENDING'")),
        # Read-your-writes on retrieve: pending commands whose effect lands on one run.
        Index(
            "ix_commands_target_pending",
            "target_run_id",
            postgresql_where=text("status = 'PENDING'"),
        ),
        # Read-your-writes on list: pending commands whose effect lands in one environment.
        Index(
            "ix_commands_target_env_pending",
            "target_environment_id",
            "created_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
        # A run's command history.
        Index("ix_commands_run", "run_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=CommandStatus.PENDING.value)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(64))
    # For replay: the id of the run the command creates, chosen at accept time so the
    # API can return it at once and reads can materialise it before a worker does.
    target_run_id: Mapped[str | None] = mapped_column(String(64))
    target_environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE")
    )
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reason: Mapped[str | None] = mapped_column(Text)
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    published_at: Mapped[datetime | None]
    applied_at: Mapped[datetime | None]
    applied_by: Mapped[str | None] = mapped_column(String(200))
