"""A batch and its items: each item (by its index in the batch) becomes one run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class Batch(Base):
    """``POST /api/v3/batches`` creates it with the number of items to expect; the item
    stream fills it. Its status is derived from its items and their runs when read."""

    __tablename__ = "batches"
    __table_args__ = (
        # A batch idempotency key names at most one batch per environment.
        Index(
            "uq_batches_idempotency",
            "environment_id",
            "idempotency_key_hash",
            unique=True,
            postgresql_where=text("idempotency_key_hash IS NOT NULL"),
        ),
        # The SDK's x-trigger-request-idempotency-key: a retried create is the same batch.
        Index(
            "uq_batches_request_idempotency",
            "environment_id",
            "request_idempotency_key",
            unique=True,
            postgresql_where=text("request_idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    run_count: Mapped[int] = mapped_column(Integer)
    task_identifiers: Mapped[list[str] | None] = mapped_column(ARRAY(String(128)))
    parent_run_id: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    idempotency_key_hash: Mapped[str | None] = mapped_column(String(128))
    request_idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # When the last expected item arrived (every item has its run or its error).
    sealed_at: Mapped[datetime | None]


class BatchItem(Base):
    """One item of a batch: the run it created, or why it could not create one."""

    __tablename__ = "batch_items"

    batch_id: Mapped[str] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_identifier: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
