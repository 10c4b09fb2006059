"""The captured log lines of runs (``run_logs``).

One row per line a task wrote during an attempt (Python ``logging``, stdout/stderr,
``ctx.logger``), inserted in batches by the worker. ``seq`` orders a run's lines (a
bigserial: the order they were flushed in, which is the order they were written within a
worker process). A run's lines are capped (a final "truncated" line marks the cut) and
old lines are removed by the retention sweep, oldest ``seq`` first
(:mod:`shared.runlogs.retention`).

What a line costs Postgres is most of what capturing it costs, so the table keeps only
what reading needs: the primary key and a run's lines in order. ``run_id`` is not a
foreign key (checking it cost as much per line as the rest of the insert: measured with
200,000 rows, 17.6 µs a line with the key and a ``logged_at`` index, 8.2 µs without
either); the worker writes lines only for the run it executes, and nothing deletes runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class RunLog(Base):
    __tablename__ = "run_logs"
    __table_args__ = (
        Index("ix_run_logs_run_seq", "run_id", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    environment_id: Mapped[str] = mapped_column(String(32))
    attempt_number: Mapped[int] = mapped_column(Integer)
    logged_at: Mapped[datetime]
    # DEBUG, INFO, WARNING, ERROR, CRITICAL (Python's names); stdout lines are INFO and
    # stderr lines WARNING, with ``logger`` "stdout" / "stderr".
    level: Mapped[str] = mapped_column(String(10))
    logger: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    exception: Mapped[str | None] = mapped_column(Text)
