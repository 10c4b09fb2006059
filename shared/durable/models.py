"""The tables of durable execution.

A run's **record** (``run_steps``) is what its executions did, in call order: one row per
``ctx.step`` (its result or error) and per wait (what it waited for, and whether that is
over). An execution that finds a row at the position it reached answers from it instead
of doing the work again; a row of another kind or name there is a non-determinism error.

A **waitpoint** (``waitpoints``) is something a run can wait for: a time (``DATETIME``),
a child run ending (``RUN``, completed in the transaction that ends the child) or a token
completed through the API or its callback URL (``TOKEN``, or its timeout). A run waits on
one or more waitpoints (``waitpoint_blocks``); when the last of them completes it is
queued again, in that same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class RunStep(Base):
    __tablename__ = "run_steps"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "step" (ctx.step) or "wait" (ctx.wait_for, wait_until, trigger_and_wait,
    # batch_trigger_and_wait, wait_for_token).
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(256))
    # COMPLETED or FAILED (a step); WAITING or COMPLETED (a wait).
    status: Mapped[str] = mapped_column(String(12))
    output: Mapped[Any] = mapped_column(JSONB, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # What a wait waits for: {"type": "datetime", "until": …} | {"type": "run", "runs": […]}
    # | {"type": "token", "token": …}.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attempt_number: Mapped[int] = mapped_column(Integer)
    # The run this row was copied from (a replay from a later step reuses it).
    copied_from: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]


class Waitpoint(Base):
    __tablename__ = "waitpoints"
    __table_args__ = (
        # Listing: newest first per environment, keyset-paginated on (created_at, id).
        Index("ix_waitpoints_env_created", "environment_id", text("created_at DESC"), text("id DESC")),
        # Timers: waiting waitpoints with a due time (a time wait, or a token's timeout).
        Index(
            "ix_waitpoints_due",
            "complete_after",
            postgresql_where=text("status = 'WAITING' AND complete_after IS NOT NULL"),
        ),
        Index(
            "uq_waitpoints_idempotency",
            "environment_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_waitpoints_tags", "tags", postgresql_using="gin"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(12))  # TOKEN | DATETIME | RUN
    status: Mapped[str] = mapped_column(String(12))  # WAITING | COMPLETED | TIMED_OUT
    # DATETIME: when it completes; TOKEN: when it times out.
    complete_after: Mapped[datetime | None]
    output: Mapped[Any] = mapped_column(JSONB, nullable=True)
    output_is_error: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    idempotency_key_expires_at: Mapped[datetime | None]
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(128)), default=list)
    # A TOKEN's callback URL carries this (an HMAC of the id): unguessable, no key needed.
    callback_hash: Mapped[str | None] = mapped_column(String(64))
    # RUN: the child run whose end completes it.
    run_id: Mapped[str | None] = mapped_column(String(64))
    # A timer (a Celery ETA task) was published for ``complete_after``: set for those due
    # within the horizon, at creation or by the sweep as they enter it.
    timer_armed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    completed_at: Mapped[datetime | None]


class WaitpointBlock(Base):
    """A run waiting on a waitpoint (a run waits on several at once in a batch wait)."""

    __tablename__ = "waitpoint_blocks"
    __table_args__ = (Index("ix_waitpoint_blocks_run", "run_id"),)

    waitpoint_id: Mapped[str] = mapped_column(
        ForeignKey("waitpoints.id", ondelete="CASCADE"), primary_key=True
    )
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
