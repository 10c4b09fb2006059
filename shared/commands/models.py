from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


class Command(Base):
    """An accepted replay or reschedule: written in the request's transaction (the outbox)."""

    __tablename__ = "commands"
    __table_args__ = (
        # The relay sweep: commands still pending, oldest first.
        Index("ix_commands_pending", "created_at", postgresql_where=text("status = 'PENDING'")),
        # Read-your-writes: pending commands of one run.
        Index(
            "ix_commands_run_pending",
            "run_id",
            postgresql_where=text("status = 'PENDING'"),
        ),
        Index("ix_commands_run", "run_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(String(64))
    # For replay: the id of the run the command creates, chosen at accept time so the
    # API can return it at once and reads can materialise it before a worker does.
    target_run_id: Mapped[str | None] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reason: Mapped[str | None] = mapped_column(Text)
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    published_at: Mapped[datetime | None]
    applied_at: Mapped[datetime | None]
    applied_by: Mapped[str | None] = mapped_column(String(200))
