"""The statements sent to the database while a block runs, as the engine's
``before_cursor_execute`` listeners see them (those run below SQLAlchemy included)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from reprise_server.shared.db import get_engine


@contextmanager
def sent_statements(*, this_thread: bool = False) -> Iterator[list[str]]:
    """The statements sent meanwhile (an executemany counts as one); with ``this_thread``,
    only the calling thread's (not an in-process worker's, nor a heartbeat's)."""
    sent: list[str] = []
    me = threading.get_ident()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not this_thread or threading.get_ident() == me:
            sent.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)
