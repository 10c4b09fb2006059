from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class BulkKind(StrEnum):
    REPLAY = "replay"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"


class BulkStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    ABORTED = "ABORTED"


class BulkAction(Base):
    """A bulk action: which runs (``selection``: the frozen filter or the run ids), what to
    do to them (``kind`` and ``arguments``), and how far it got.

    It is worked through by batch commands (:mod:`shared.bulk.batches`), one at a time,
    newest runs first: ``cursor_created_at``/``cursor_run_id`` is the last run a committed
    batch handled, so the next batch resumes after it.
    """

    __tablename__ = "bulk_actions"
    __table_args__ = (
        # GET /api/v1/bulk-actions: an environment's actions, newest first.
        Index("ix_bulk_actions_env_created", "environment_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=BulkStatus.PENDING.value)
    selection: Mapped[dict[str, Any]] = mapped_column(JSONB)
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    source: Mapped[str] = mapped_column(String(16), default="api")
    total_count: Mapped[int] = mapped_column(Integer, default=0)
    success_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    batch_count: Mapped[int] = mapped_column(Integer, default=0)
    cursor_created_at: Mapped[datetime | None]
    cursor_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]


class BulkActionItem(Base):
    """What a bulk action did to one run: ``result_run_id`` is the run it produced or
    changed (a replay's new run, the canceled or rescheduled run itself), ``None`` when it
    could not act (``reason`` says why). ``filter[bulkAction]`` lists the result runs."""

    __tablename__ = "bulk_action_items"

    bulk_action_id: Mapped[str] = mapped_column(
        ForeignKey("bulk_actions.id", ondelete="CASCADE"), primary_key=True
    )
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    result_run_id: Mapped[str | None] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
