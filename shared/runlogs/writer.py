"""Writing captured lines to ``run_logs``: in batches, off the task's thread.

A worker process has one :class:`Flusher`: a daemon thread that writes what the process's
runs captured with one ``COPY`` per batch, once ``run_log_flush_lines`` lines are waiting
or the oldest has waited ``run_log_flush_ms``, and at once when an attempt ends
(:meth:`Flusher.flush`, called before the run's outcome is written, so a finished run has
all its lines). Each batch is its own transaction: a worker killed mid-run keeps every
batch written before it died.

The per-run cap (``run_log_max_lines``) is applied here, where the lines of earlier
attempts are known: past it, one WARNING line from the ``reprise`` logger says the log was
truncated, and further lines are dropped.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.orm import Session

from reprise_server.shared.db import transaction

log = logging.getLogger("reprise.runlogs")

# The logger of the line that marks a truncated log (and of nothing a task writes).
MARKER_LOGGER = "reprise"
_COLUMNS = (
    "run_id, environment_id, attempt_number, logged_at, level, logger, message, "
    "attributes, exception"
)


@dataclass(slots=True)
class LogLine:
    run_id: str
    environment_id: str
    attempt_number: int
    logged_at: datetime
    level: str
    logger: str
    message: str
    attributes: dict[str, Any] | None = None
    exception: str | None = None


def truncated_marker(line: LogLine, max_lines: int) -> LogLine:
    return LogLine(
        run_id=line.run_id,
        environment_id=line.environment_id,
        attempt_number=line.attempt_number,
        logged_at=line.logged_at,
        level="WARNING",
        logger=MARKER_LOGGER,
        message=(
            f"log truncated: this run reached {max_lines} lines "
            "(REPRISE_RUN_LOG_MAX_LINES); later lines were dropped"
        ),
        attributes={"truncated": True, "maxLines": max_lines},
    )


def _text(value: str) -> str:
    """What Postgres can store: no NUL, no lone surrogate."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _row(line: LogLine) -> tuple[Any, ...]:
    attributes = None
    if line.attributes:
        attributes = _text(json.dumps(line.attributes, default=str)).replace("\\u0000", "\\ufffd")
    return (
        line.run_id,
        line.environment_id,
        line.attempt_number,
        line.logged_at,
        line.level,
        _text(line.logger)[:200],
        _text(line.message),
        attributes,
        _text(line.exception) if line.exception is not None else None,
    )


def lines_of(session: Session, run_ids: Sequence[str]) -> dict[str, int]:
    """How many lines each run already has."""
    rows = session.execute(
        text("SELECT run_id, count(*) FROM run_logs WHERE run_id = ANY(:ids) GROUP BY run_id"),
        {"ids": list(run_ids)},
    ).all()
    counts = {run_id: 0 for run_id in run_ids}
    counts.update({row[0]: int(row[1]) for row in rows})
    return counts


def capped(lines: Sequence[LogLine], written: dict[str, int], max_lines: int) -> list[LogLine]:
    """The lines to write once each run's cap is applied (``written`` is updated): up to
    ``max_lines`` per run, then one marker line, then nothing."""
    kept: list[LogLine] = []
    for line in lines:
        count = written[line.run_id]
        if count < max_lines:
            kept.append(line)
        elif count == max_lines:
            kept.append(truncated_marker(line, max_lines))
        else:
            continue
        written[line.run_id] = count + 1
    return kept


def copy_lines(session: Session, lines: Sequence[LogLine]) -> None:
    """One ``COPY`` of ``lines`` into ``run_logs``, in order (their ``seq`` follows it)."""
    if not lines:
        return
    connection = session.connection().connection.driver_connection
    assert connection is not None
    with connection.cursor() as cursor, cursor.copy(
        f"COPY run_logs ({_COLUMNS}) FROM STDIN"
    ) as copy:
        for line in lines:
            copy.write_row(_row(line))


def write_batch(lines: Sequence[LogLine], written: dict[str, int], max_lines: int) -> int:
    """Write one batch in one transaction; returns how many rows it wrote. ``written``
    (lines per run, as far as this process knows) is read for unknown runs and updated
    only when the transaction commits."""
    with transaction() as session:
        counts = dict(written)
        unknown = sorted({line.run_id for line in lines} - counts.keys())
        if unknown:
            counts.update(lines_of(session, unknown))
        kept = capped(lines, counts, max_lines)
        copy_lines(session, kept)
    written.update(counts)
    return len(kept)


class Flusher:
    """The process's writer thread (started on first use, again after a fork)."""

    def __init__(
        self, flush_lines: int, flush_ms: int, max_lines: int, retry_seconds: float,
        write: Callable[[Sequence[LogLine], dict[str, int], int], int] = write_batch,
    ) -> None:
        self.flush_lines = max(1, flush_lines)
        self.flush_seconds = max(0.0, flush_ms / 1000)
        self.max_lines = max_lines
        self.retry_seconds = retry_seconds
        self._write = write
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[LogLine] = []
        self._first_at = 0.0
        self._accepted = 0
        self._handled = 0
        self._urgent = False
        self._written: dict[str, int] = {}
        self._forgotten: list[str] = []
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # a forked child: its parent's thread is not here
            self._reset()
        if self._thread is None:
            thread = threading.Thread(target=self._loop, name="reprise-run-logs", daemon=True)
            thread._reprise_capture = None  # type: ignore[attr-defined]  # never captured
            self._thread = thread
            thread.start()

    def add(self, line: LogLine) -> None:
        if self._thread is None or self._pid != os.getpid():
            self._ensure_thread()
        with self._cond:
            self._pending.append(line)
            self._accepted += 1
            # The writer sleeps until a first line arrives (then until it is due), or
            # until a batch is full.
            if len(self._pending) == 1:
                self._first_at = time.monotonic()
                self._cond.notify_all()
            elif len(self._pending) >= self.flush_lines:
                self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every line added before this call is written (or dropped); False if
        that took longer than ``timeout``."""
        if self._pid != os.getpid():
            return True
        with self._cond:
            target = self._accepted
            if self._handled >= target:
                return True
            self._urgent = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._handled >= target, timeout)

    def forget(self, run_id: str) -> None:
        """The run's attempt is over: its line count need not stay in memory."""
        with self._cond:
            self._forgotten.append(run_id)

    def _due(self) -> bool:
        if not self._pending:
            return False
        return (
            self._urgent
            or len(self._pending) >= self.flush_lines
            or time.monotonic() - self._first_at >= self.flush_seconds
        )

    def _loop(self) -> None:
        # ``_written`` is this thread's alone.
        while True:
            with self._cond:
                while not self._due():
                    wait = None
                    if self._pending:
                        wait = max(0.0, self._first_at + self.flush_seconds - time.monotonic())
                    self._cond.wait(wait)
                batch = self._pending[: self.flush_lines * 4]
                del self._pending[: len(batch)]
                if self._pending:
                    self._first_at = time.monotonic()
                else:
                    self._urgent = False
            self._write_with_retries(batch, self._written)
            with self._cond:
                self._handled += len(batch)
                for run_id in self._forgotten:
                    self._written.pop(run_id, None)
                self._forgotten.clear()
                self._cond.notify_all()

    def _write_with_retries(self, batch: Sequence[LogLine], written: dict[str, int]) -> None:
        """Write ``batch``, retrying while the database is unreachable (for up to
        ``retry_seconds``); a batch the database refuses for another reason is written line
        by line, so one bad line costs only itself."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                self._write(batch, written, self.max_lines)
                return
            except Exception as exc:
                if not _unreachable(exc):
                    if len(batch) > 1:
                        for line in batch:
                            self._write_with_retries([line], written)
                    else:
                        log.warning("dropped a run log line the database refused", exc_info=True)
                    return
                if time.monotonic() + delay > deadline:
                    log.warning("dropped %d run log lines: the database was unreachable",
                                len(batch), exc_info=True)
                    return
                log.warning("writing %d run log lines failed; retrying in %.2fs",
                            len(batch), delay, exc_info=True)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


def _unreachable(exc: BaseException) -> bool:
    """The database is briefly unreachable (a restart, a dropped connection), as opposed
    to refusing what was sent."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not isinstance(
        exc, psycopg.errors.QueryCanceled
    )
