"""The tables of flow control.

A **limit** (``concurrency_limits``) caps the runs holding it: ``total`` over all of them,
``per_key`` over each ``concurrencyKey`` pool (runs without a key share the pool ``""``).
Each bound has a base (declared by the worker version) and an override (set at runtime,
cleared by a reset). ``running`` counts the slots held (``concurrency_slots``: one row per
run and limit, from admission to the end of the attempt).

A run that must wait stands in the **line** (``admission_line``: one row per run and limit
it holds), ordered by ``rank`` (when it was queued, minus its priority). Per limit and key,
``concurrency_keys`` keeps the counters and the rank of the key's oldest waiting run
(``head_rank``); a partial index over the keys that have room and a waiting run makes
"which run is next" one index probe, whatever the number of keys.

Every row of a limit (its counters, its keys, its slots and line) changes only under a lock
on the limit's row: :mod:`shared.flow.admission`.

A **queue** (``queues``) is the line runs of a task (``task/<id>``) or of a named queue
(``@task(queue=...)``) belong to; a paused queue admits nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class ConcurrencyLimit(Base):
    __tablename__ = "concurrency_limits"
    __table_args__ = (Index("uq_concurrency_limits_env_name", "environment_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    total_base: Mapped[int | None] = mapped_column(Integer)
    per_key_base: Mapped[int | None] = mapped_column(Integer)
    total_override: Mapped[int | None] = mapped_column(Integer)
    per_key_override: Mapped[int | None] = mapped_column(Integer)
    overridden_at: Mapped[datetime | None]
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    running: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ConcurrencyKey(Base):
    __tablename__ = "concurrency_keys"
    __table_args__ = (
        # The keys with a waiting run and room, oldest head first: the next admission.
        Index(
            "ix_concurrency_keys_ready",
            "limit_id",
            "head_rank",
            postgresql_where=text("head_rank IS NOT NULL AND (cap IS NULL OR running < cap)"),
        ),
    )

    limit_id: Mapped[str] = mapped_column(
        ForeignKey("concurrency_limits.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    running: Mapped[int] = mapped_column(Integer, default=0)
    waiting: Mapped[int] = mapped_column(Integer, default=0)
    head_rank: Mapped[datetime | None]
    # The per-key bound in force for this key: its override while one lasts, else the
    # limit's ``per_key`` (NULL: no per-key bound).
    cap: Mapped[int | None] = mapped_column(Integer)
    override: Mapped[int | None] = mapped_column(Integer)
    override_expires_at: Mapped[datetime | None]


class ConcurrencySlot(Base):
    __tablename__ = "concurrency_slots"
    __table_args__ = (Index("ix_concurrency_slots_limit_key", "limit_id", "key"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    limit_id: Mapped[str] = mapped_column(
        ForeignKey("concurrency_limits.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(256))
    acquired_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AdmissionLine(Base):
    __tablename__ = "admission_line"
    __table_args__ = (Index("ix_admission_line_order", "limit_id", "key", "rank", "run_id"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    limit_id: Mapped[str] = mapped_column(
        ForeignKey("concurrency_limits.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(256))
    rank: Mapped[datetime]
    entered_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Queue(Base):
    __tablename__ = "queues"

    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(160), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    # "task": a task's own queue (``task/<taskId>``); "custom": named by ``@task(queue=...)``.
    type: Mapped[str] = mapped_column(String(8))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
