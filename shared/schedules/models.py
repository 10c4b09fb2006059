"""A cron schedule of one task in one environment."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base
from reprise_server.shared.runs.models import StatusColumn


class ScheduleType(StrEnum):
    # From ``@task(cron=…)`` in the code: a worker version's registration keeps it.
    DECLARATIVE = "DECLARATIVE"
    # Created over the API (``schedules.create``), CLI or SDK.
    IMPERATIVE = "IMPERATIVE"


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (
        # A deduplication key names one schedule per environment (declarative ones use the
        # task id, in their own namespace, so no user key can collide with them).
        UniqueConstraint(
            "environment_id", "type", "deduplication_key", name="uq_schedules_env_type_key"
        ),
        # The beat sweep: active schedules by their next tick. With nothing due, one probe
        # of this index is all a sweep costs, however many schedules wait.
        Index("ix_schedules_due", "next_tick_at", postgresql_where=text("active")),
        # schedules.list: newest first per environment, offset pages.
        Index("ix_schedules_env_created", "environment_id", text("created_at DESC"), text("id DESC")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    task_identifier: Mapped[str] = mapped_column(String(128))
    type: Mapped[ScheduleType] = mapped_column(StatusColumn(ScheduleType, 16))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(Text)
    deduplication_key: Mapped[str] = mapped_column(String(256))
    user_provided_deduplication_key: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The tick the sweep fires next (None while inactive); the tick it fired last (the
    # scheduled payload's ``lastTimestamp``).
    next_tick_at: Mapped[datetime | None]
    last_tick_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
