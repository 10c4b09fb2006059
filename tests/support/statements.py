"""The statements sent to the database while a block runs, as the engine's
``before_cursor_execute`` listeners see them (those run below SQLAlchemy included)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from reprise_server.shared.db import get_engine


@contextmanager
def _listening(keep: Callable[[str, Any], None], this_thread: bool) -> Iterator[None]:
    me = threading.get_ident()

    def seen(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if not this_thread or threading.get_ident() == me:
            keep(statement, params)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", seen)


@contextmanager
def sent_statements(*, this_thread: bool = False) -> Iterator[list[str]]:
    """The statements sent meanwhile (an executemany counts as one); with ``this_thread``,
    only the calling thread's (not an in-process worker's, nor a heartbeat's)."""
    sent: list[str] = []
    with _listening(lambda statement, _: sent.append(statement), this_thread):
        yield sent


@contextmanager
def captured_statements() -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent meanwhile, with its parameters."""
    seen: list[tuple[str, Any]] = []
    with _listening(lambda statement, params: seen.append((statement, params)), False):
        yield seen
