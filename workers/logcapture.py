"""Capturing what a run's task writes during an attempt: Python ``logging`` (any logger,
``ctx.logger`` included), ``print`` and anything else written to stdout/stderr.

While an attempt runs, :func:`capturing` makes a :class:`Capture` *current*:

* in the task's thread and everything that copies its context (an ``async def`` task's
  coroutines and tasks, ``asyncio.to_thread``), through a context variable;
* in every thread started (``Thread.start``) from a thread where it is current, the
  thread pools the task creates included: a thread remembers the capture it was started
  under (a closed capture records nothing, so a thread that outlives its run, or a pool
  thread a later run reuses, is not attributed to the wrong run).

A handler at the front of the root logger's handlers, and a tee in front of
``sys.stdout``/``sys.stderr``, hand what is written under a current capture to it; what is
written anywhere else goes on exactly as before (the tee always writes through, and the
handler only reads records). Lines are queued for the process's
:class:`~shared.runlogs.writer.Flusher`: the task's thread never waits on the database
except at the end of the attempt (:meth:`Capture.close`).

Not covered: subprocesses, threads of pools created before the attempt, loggers that do not
propagate to the root logger, and records below a logger's level.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from reprise_server.shared.runlogs.writer import Flusher, LogLine
from reprise_server.shared.settings import get_settings

_current: ContextVar[Capture | None] = ContextVar("reprise_run_log_capture", default=None)

# Loggers whose records are never a run's lines: the worker's own, and Celery's copy of
# what is printed (the tee captured it already as stdout/stderr).
_IGNORED_LOGGERS = ("celery", "reprise.execution", "reprise.worker", "reprise.runlogs", "kombu")
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}
_JSON_SCALARS = (str, int, bool, type(None))


def current() -> Capture | None:
    """The capture of the attempt this code runs for, if any (and still open)."""
    capture = _current.get()
    if capture is None:
        capture = getattr(threading.current_thread(), "_reprise_capture", None)
    if capture is None or capture.closed:
        return None
    return capture


def _json_safe(value: Any) -> Any:
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return str(value)


class Capture:
    """What one attempt writes, queued for the flusher as lines."""

    def __init__(
        self, run_id: str, environment_id: str, attempt_number: int, flusher: Flusher,
        max_lines: int,
    ) -> None:
        self.run_id = run_id
        self.environment_id = environment_id
        self.attempt_number = attempt_number
        self.flusher = flusher
        # This attempt queues at most one line past the run's cap: enough for the
        # flusher to write the "truncated" marker; the rest is dropped here.
        self.limit = max_lines + 1
        self.count = 0
        self.closed = False
        self._lock = threading.Lock()
        self._partial: dict[tuple[str, int], str] = {}

    def add(
        self, level: str, logger: str, message: str, attributes: dict[str, Any] | None = None,
        exception: str | None = None, created: float | None = None,
    ) -> None:
        with self._lock:
            if self.closed or self.count >= self.limit:
                return
            self.count += 1
        when = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
        self.flusher.add(LogLine(
            self.run_id, self.environment_id, self.attempt_number, when, level, logger,
            message, attributes, exception,
        ))

    def add_record(self, record: logging.LogRecord) -> None:
        extras = {
            key: _json_safe(value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        }
        exception = None
        if record.exc_info and record.exc_info[0] is not None:
            exception = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        elif record.exc_text:
            exception = record.exc_text
        if record.stack_info:
            exception = f"{exception}\n{record.stack_info}" if exception else record.stack_info
        level = record.levelname if record.levelname in _LEVELS else _level_of(record.levelno)
        self.add(level, record.name, record.getMessage(), extras or None, exception,
                 record.created)

    def write(self, stream: str, data: str) -> None:
        """Text written to ``stream`` ("stdout"/"stderr"): one line per newline, partial
        lines kept per thread until completed (or the attempt ends)."""
        key = (stream, threading.get_ident())
        with self._lock:
            buffered = self._partial.pop(key, "") + data
            *lines, rest = buffered.split("\n")
            if rest:
                self._partial[key] = rest
        for line in lines:
            self._add_stream_line(stream, line)

    def _add_stream_line(self, stream: str, line: str) -> None:
        self.add("INFO" if stream == "stdout" else "WARNING", stream, line.rstrip("\r"))

    def close(self) -> None:
        """End of the attempt: queue partial lines, then stop recording."""
        with self._lock:
            partial = sorted(self._partial.items())
            self._partial.clear()
        for (stream, _), line in partial:
            self._add_stream_line(stream, line)
        with self._lock:
            self.closed = True


_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


def _level_of(levelno: int) -> str:
    if levelno >= logging.CRITICAL:
        return "CRITICAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARNING"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


class RunLogHandler(logging.Handler):
    """Hands each record logged under a current capture to it; ignores every other."""

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: add() has its own
        capture = current()
        if capture is None or record.name.startswith(_IGNORED_LOGGERS):
            return False
        try:
            capture.add_record(record)
        except Exception:
            self.handleError(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does it
        self.handle(record)


class StreamTee:
    """In front of ``sys.stdout``/``sys.stderr``: writes through to the stream it wraps,
    and hands what a run writes to its capture."""

    def __init__(self, inner: TextIO, name: str) -> None:
        self._inner = inner
        self._name = name

    def write(self, data: str) -> int:
        capture = current()
        if capture is not None and isinstance(data, str):
            capture.write(self._name, data)
        return self._inner.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


_HANDLER = RunLogHandler()
_original_start = threading.Thread.start
_flusher: Flusher | None = None
_install_lock = threading.Lock()


def _start(self: threading.Thread) -> None:
    if "_reprise_capture" not in self.__dict__:
        self._reprise_capture = current()  # type: ignore[attr-defined]
    _original_start(self)


def flusher() -> Flusher:
    global _flusher
    if _flusher is None:
        settings = get_settings()
        _flusher = Flusher(
            settings.run_log_flush_lines, settings.run_log_flush_ms, settings.run_log_max_lines,
            settings.worker_db_retry_seconds,
        )
    return _flusher


def install() -> None:
    """Put the handler, the tees and the thread hook in place (idempotent; again if
    something replaced them, e.g. a logging configuration or Celery's stdout redirect)."""
    root = logging.getLogger()
    if (
        root.handlers and root.handlers[0] is _HANDLER
        and isinstance(sys.stdout, StreamTee) and isinstance(sys.stderr, StreamTee)
        and threading.Thread.start is _start
    ):
        return
    with _install_lock:
        if _HANDLER in root.handlers:
            root.removeHandler(_HANDLER)
        root.handlers.insert(0, _HANDLER)  # before any handler's filter adds to the record
        if not isinstance(sys.stdout, StreamTee):
            sys.stdout = StreamTee(sys.stdout, "stdout")
        if not isinstance(sys.stderr, StreamTee):
            sys.stderr = StreamTee(sys.stderr, "stderr")
        threading.Thread.start = _start  # type: ignore[method-assign]


@contextmanager
def capturing(run_id: str, environment_id: str, attempt_number: int) -> Iterator[Capture | None]:
    """Capture the attempt's lines for the duration of the block (nothing when
    ``run_log_capture`` is off). On the way out: partial lines are queued, the capture is
    closed, and the block waits for the flusher to have written them all."""
    settings = get_settings()
    if not settings.run_log_capture:
        yield None
        return
    install()
    writer = flusher()
    capture = Capture(run_id, environment_id, attempt_number, writer, settings.run_log_max_lines)
    token = _current.set(capture)
    try:
        yield capture
    finally:
        _current.reset(token)
        capture.close()
        if capture.count:
            if not writer.flush(settings.worker_db_retry_seconds):
                logging.getLogger("reprise.runlogs").warning(
                    "run %s: its log lines were not all written before its outcome", run_id
                )
            writer.forget(run_id)
