"""Logging for every process: readable text in dev, one JSON object per line elsewhere.

Structured fields come from two places: ``extra=`` on a log call (a run state change
passes ``run_id``, ``status``, ``task``, ``environment``), and the *log context*, bound for
the duration of a unit of work (a Celery task binds ``run_id`` or ``command_id``, see
``workers/monitoring.py``) so every line logged inside it carries them. Payloads and
outputs are never logged by Reprise's own code: lines carry ids, never data.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from reprise_server.shared.settings import get_settings

# Fields a log call may pass with ``extra=`` (or bind in the log context) that belong in
# the structured line.
CONTEXT_FIELDS = (
    "run_id",
    "run_ids",
    "count",
    "command_id",
    "task",
    "environment",
    "status",
    "from_status",
    "celery_task_id",
)

_context: ContextVar[dict[str, Any]] = ContextVar("reprise_log_context", default={})  # noqa: B039


def bind_log_context(**fields: Any) -> Token[dict[str, Any]]:
    """Add fields to the log context of the current thread/task; undo with
    :func:`unbind_log_context` (for hooks that open and close in separate calls)."""
    present = {k: v for k, v in fields.items() if v is not None}
    return _context.set({**_context.get(), **present})


def unbind_log_context(token: Token[dict[str, Any]]) -> None:
    _context.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """``with log_context(command_id=…):`` every line logged inside carries the fields."""
    token = bind_log_context(**fields)
    try:
        yield
    finally:
        unbind_log_context(token)


def current_log_context() -> dict[str, Any]:
    return _context.get()


class ContextFilter(logging.Filter):
    """Copies the log context onto each record (a call's own ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str = "") -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.process:
            line["process"] = self.process
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The dev format: a readable line, with the ids appended as ``key=value``."""

    def __init__(self, process: str) -> None:
        super().__init__(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {k: v for k, v in _fields(record).items() if k not in ("run_ids",)}
        if fields:
            text += "  " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


def configure_logging(process: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if get_settings().effective_log_format == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        handler.setFormatter(TextFormatter(process))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
