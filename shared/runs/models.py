from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from reprise_server.shared.db import Base, Detached
from reprise_server.shared.runs.states import AttemptStatus, RunStatus

E = TypeVar("E", bound=StrEnum)


class StatusColumn(TypeDecorator[E], Generic[E]):
    """A status stored as ``VARCHAR(n)`` (what the migrations create) and loaded as its
    enum, so code compares and maps members, never bare strings."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # List: newest first per environment, keyset-paginated on (created_at, id).
        Index("ix_runs_env_created", "environment_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_runs_env_status_created",
            "environment_id",
            "status",
            text("created_at DESC"),
        ),
        Index("ix_runs_env_task_created", "environment_id", "task_identifier", text("created_at DESC")),
        Index("ix_runs_tags", "tags", postgresql_using="gin"),
        # A user's idempotency key names at most one live run per task and environment.
        Index(
            "uq_runs_idempotency",
            "environment_id",
            "task_identifier",
            "idempotency_key_hash",
            unique=True,
            postgresql_where=text("idempotency_key_hash IS NOT NULL"),
        ),
        Index(
            "uq_runs_request_idempotency",
            "environment_id",
            "request_idempotency_key",
            unique=True,
            postgresql_where=text("request_idempotency_key IS NOT NULL"),
        ),
        # Timers: DELAYED runs by due time (arm / promote sweep).
        Index(
            "ix_runs_delayed_due",
            "delayed_until",
            postgresql_where=text("status = 'DELAYED'"),
        ),
        # TTL: never-dequeued QUEUED runs by expiry (expire sweep).
        Index(
            "ix_runs_queued_ttl",
            "ttl_expires_at",
            postgresql_where=text("status = 'QUEUED' AND ttl_expires_at IS NOT NULL"),
        ),
        # Backstop: runs whose dispatch or retry message may have been lost.
        Index(
            "ix_runs_dispatchable",
            "dispatched_at",
            postgresql_where=text("status IN ('QUEUED', 'RETRYING')"),
        ),
        # Backstop: executing runs whose worker went silent.
        Index(
            "ix_runs_executing_heartbeat",
            "heartbeat_at",
            postgresql_where=text("status IN ('DEQUEUED', 'EXECUTING')"),
        ),
        Index(
            "ix_runs_pending_version",
            "environment_id",
            "task_identifier",
            postgresql_where=text("status = 'PENDING_VERSION'"),
        ),
        # Flow control: runs held back from their queue (waiting for admission, parked in a
        # paused queue, or in a limited run's retry backoff).
        Index(
            "ix_runs_env_admission",
            "environment_id",
            "admission",
            postgresql_where=text("admission IS NOT NULL"),
        ),
        Index("ix_runs_replayed_from", "replayed_from", postgresql_where=text("replayed_from IS NOT NULL")),
        Index("ix_runs_parent", "parent_run_id", postgresql_where=text("parent_run_id IS NOT NULL")),
        # A batch's runs (batch retrieve, filter[batch], subscribeToBatch).
        Index("ix_runs_batch", "batch_id", postgresql_where=text("batch_id IS NOT NULL")),
        # Schedules: one run per tick (the guard two beats cannot get past), and
        # runs.list({ schedule }) newest first.
        Index(
            "uq_runs_schedule_tick",
            "schedule_id",
            "schedule_tick_at",
            unique=True,
            postgresql_where=text("schedule_id IS NOT NULL"),
        ),
        Index(
            "ix_runs_schedule_created",
            "schedule_id",
            text("created_at DESC"),
            postgresql_where=text("schedule_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    task_identifier: Mapped[str] = mapped_column(String(128))
    status: Mapped[RunStatus] = mapped_column(StatusColumn(RunStatus, 20))
    version: Mapped[str | None] = mapped_column(String(100))
    locked_version: Mapped[str | None] = mapped_column(String(100))

    payload: Mapped[Any] = mapped_column(JSONB, nullable=True)
    payload_type: Mapped[str] = mapped_column(String(40), default="application/json")
    output: Mapped[Any] = mapped_column(JSONB, nullable=True)
    output_type: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    idempotency_key: Mapped[str | None] = mapped_column(Text)
    idempotency_key_hash: Mapped[str | None] = mapped_column(String(128))
    request_idempotency_key: Mapped[str | None] = mapped_column(String(128))
    # After this the key no longer deduplicates (``idempotencyKeyTTL``).
    idempotency_key_expires_at: Mapped[datetime | None]

    tags: Mapped[list[str]] = mapped_column(ARRAY(String(128)), default=list)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    max_duration_seconds: Mapped[int | None] = mapped_column(Integer)
    queue: Mapped[str | None] = mapped_column(String(128))
    concurrency_key: Mapped[str | None] = mapped_column(String(256))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # The concurrency limits the run holds (names; NULL: none, the fast path) and, while it
    # is held back from its queue, why: "waiting" (in the admission line), "paused" (its
    # queue is paused) or "backoff" (a limited run's retry, entering the line when due).
    concurrency_limits: Mapped[list[str] | None] = mapped_column(ARRAY(String(128)))
    # The named limits a trigger's ``options.concurrency`` put in place of the task's
    # (NULL: none given; empty: none held), kept so that a replay carries them.
    concurrency_override: Mapped[list[str] | None] = mapped_column(ARRAY(String(128)))
    admission: Mapped[str | None] = mapped_column(String(8))
    machine: Mapped[str | None] = mapped_column(String(64))
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    debug_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    trigger_function: Mapped[str] = mapped_column(String(32), default="trigger")
    triggered_by: Mapped[str] = mapped_column(String(32), default="api")

    ttl_seconds: Mapped[int | None] = mapped_column(Integer)
    ttl_expires_at: Mapped[datetime | None]
    delayed_until: Mapped[datetime | None]
    # Bumped by every reschedule, cancel and promotion: a timer carrying an older token
    # is stale and does nothing (docs/architecture.md#timers).
    schedule_token: Mapped[int] = mapped_column(BigInteger, default=0)
    timer_armed_token: Mapped[int | None] = mapped_column(BigInteger)

    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    queued_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    dequeued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(200))

    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    # Executions that were resumes after a durable wait (they are attempts, not retries:
    # ``attempt_count - resume_count`` is what ``max_attempts`` bounds).
    resume_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    duration_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_in_cents: Mapped[float] = mapped_column(Float, default=0.0)
    base_cost_in_cents: Mapped[float] = mapped_column(Float, default=0.0)

    depth: Mapped[int] = mapped_column(Integer, default=0)
    parent_run_id: Mapped[str | None] = mapped_column(String(64))
    root_run_id: Mapped[str | None] = mapped_column(String(64))
    batch_id: Mapped[str | None] = mapped_column(String(64))
    replayed_from: Mapped[str | None] = mapped_column(String(64))
    # The RUN waitpoint this run's end completes (its parent waits for it:
    # ``ctx.trigger_and_wait``).
    waitpoint_id: Mapped[str | None] = mapped_column(String(64))
    # Where a replay starts when not from the top: ``{"checkpoint": n}`` (its state is the
    # payload) or ``{"step": name, "position": p}`` (the record before it is reused).
    resumed_from: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    lineage_depth: Mapped[int] = mapped_column(Integer, default=0)
    execution_trace: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The transaction (xid8, as a number) that last changed what realtime shows of the run;
    # written by the trigger of migration 0004_batches, never by the application.
    realtime_xid: Mapped[int | None] = mapped_column(BigInteger)
    # The schedule whose tick created this run, and that tick (no foreign key: a deleted
    # schedule's runs keep its id, as in Trigger.dev).
    schedule_id: Mapped[str | None] = mapped_column(String(64))
    schedule_tick_at: Mapped[datetime | None]


# A Run in no session from its values (by attribute name): for a run written or read by a
# statement below SQLAlchemy (every trigger and every claim), never added to a session.
detached_run = Detached(Run)


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("run_id", "number", name="uq_attempts_run_number"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[AttemptStatus] = mapped_column(StatusColumn(AttemptStatus, 20))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class Checkpoint(Base):
    """State a task saved with ``ctx.checkpoint(state)``; replay can start from one."""

    __tablename__ = "checkpoints"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[Any] = mapped_column(JSONB, nullable=True)
    attempt_number: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
