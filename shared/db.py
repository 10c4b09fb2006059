"""Engine, sessions and the declarative base.

Services never commit: the request or task boundary does, with :func:`transaction`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from threading import Lock
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.db")

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every timestamp is timestamptz: processes in different zones share one clock.
    type_annotation_map = {datetime: DateTime(timezone=True)}


_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}
_lock = Lock()


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            # No pre-ping (a round trip per checkout): a connection the server dropped fails
            # its statement, the pool invalidates it (and every older one), and the caller
            # sees a transient error — the api answers 503 with x-should-retry, tasks retry.
            settings = get_settings()
            engine = create_engine(
                url,
                pool_size=settings.database_pool_size,
                max_overflow=settings.database_max_overflow,
                pool_recycle=1800,
            )
            _engines[url] = engine
            _factories[url] = sessionmaker(engine, expire_on_commit=False)
        return engine


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    url = url or get_settings().database_url
    get_engine(url)
    return _factories[url]


AfterCommit = Callable[[], None]

# The callbacks waiting for this session's commit, in ``session.info`` under this key; the
# functions below are the only way in or out of it.
_AFTER_COMMIT = "after_commit"


def on_commit(session: Session, callback: AfterCommit) -> None:
    """Run ``callback`` once this session's transaction has committed (dispatch after commit)."""
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


def discard_after_commit(session: Session) -> None:
    """Drop every callback registered so far: nothing is published at the next commit
    (for a caller that delivers the message itself, or that simulates a lost publish)."""
    session.info.pop(_AFTER_COMMIT, None)


@contextmanager
def after_commit_scope(session: Session) -> Iterator[None]:
    """Callbacks registered inside the block are dropped if the block raises, the way a
    savepoint drops its writes; those registered before it are kept.

    For a block whose writes are undone with it (a savepoint), or that validates before it
    writes, so that a failure publishes nothing for an effect that did not happen.
    """
    callbacks: list[AfterCommit] = session.info.setdefault(_AFTER_COMMIT, [])
    kept = len(callbacks)
    try:
        yield
    except BaseException:
        del callbacks[kept:]
        raise


def run_after_commit(session: Session) -> None:
    """Publishing after commit is best effort: the write is durable, and the sweeps
    republish whatever a failed publish left behind (a lost dispatch only delays work)."""
    callbacks: list[AfterCommit] = session.info.pop(_AFTER_COMMIT, [])
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.warning("publish after commit failed; the sweep will retry it", exc_info=True)


def commit(session: Session) -> None:
    """End the unit of work of :func:`transaction` early, in the calling thread: commit,
    then run the after-commit callbacks. The ``transaction`` block then has nothing left to
    do on its way out (no I/O), and a failure here propagates through it as any other."""
    session.commit()
    run_after_commit(session)


def has_pending_work(session: Session) -> bool:
    """Whether ending ``session``'s unit of work would talk to the database or the broker."""
    return session.in_transaction() or bool(session.info.get(_AFTER_COMMIT))


@contextmanager
def transaction() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception.

    Callbacks registered with :func:`on_commit` run after the commit and are dropped on
    rollback, so nothing is published for a write that did not happen.
    """
    with _committed(session_factory()()) as session:
        yield session


@contextmanager
def _committed(
    session: Session, before_close: Callable[[], None] | None = None
) -> Iterator[Session]:
    """Commit ``session`` when the block ends, roll it back if it raised, close it (after
    ``before_close``), then run its after-commit callbacks."""
    try:
        yield session
        # A session the block committed itself (an api route, in its own thread) has no
        # transaction left: committing again would begin an empty one only to end it.
        if session.in_transaction():
            session.commit()
    except BaseException:
        discard_after_commit(session)
        session.rollback()
        raise
    finally:
        if before_close is not None:
            before_close()
        session.close()
    run_after_commit(session)


# In ``Connection.info`` while the connection serves a :func:`single_statement` unit: how
# many writes it has executed.
_SINGLE_STATEMENT = "reprise.single_statement"


class SecondWrite(RuntimeError):
    """A :func:`single_statement` unit tried a second write: it would commit apart from
    the first. A programming error, raised before the statement runs."""


@contextmanager
def single_statement() -> Iterator[Session]:
    """A unit of work whose only write is one statement (a compare-and-set move that
    writes its related rows in data-modifying CTEs), run in autocommit.

    The statement is atomic on its own, so the transaction around it only cost two
    round trips, BEGIN and COMMIT; a run's claim and its completion are such moves, and
    without those round trips each costs the worker and Postgres measurably less CPU.
    Reads may follow the write: under READ COMMITTED each statement of a transaction
    takes its own snapshot too. A second write raises :class:`SecondWrite` before it
    runs. After-commit callbacks run after the statement, as after a commit, and are
    dropped if the block raises."""
    session = session_factory()()
    # The pooled connection's own info: it outlives this unit's Connection, which the
    # commit closes.
    info = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"}).info
    info[_SINGLE_STATEMENT] = 0
    # Unmarked before the connection goes back to the pool: whoever takes it next
    # (an after-commit callback's own transaction, say) may write as often as it likes.
    with _committed(session, lambda: info.pop(_SINGLE_STATEMENT, None)) as session:
        yield session


@event.listens_for(Engine, "before_cursor_execute")
def _one_write_only(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
    executemany: bool,
) -> None:
    writes = conn.info.get(_SINGLE_STATEMENT)
    if writes is None or statement.lstrip()[:6].upper() == "SELECT":
        return
    if writes:
        raise SecondWrite(f"a second write in a single-statement unit: {statement[:80]}")
    conn.info[_SINGLE_STATEMENT] = 1


def dispose_engines() -> None:
    """Drop pooled connections (after fork, or in tests between servers)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


def utcnow() -> datetime:
    return datetime.now(UTC)


def db_now(session: Session) -> datetime:
    """The database's clock: every process compares times against one clock."""
    return session.execute(select(func.now())).scalar_one()


def drain(step: Callable[[Any], tuple[Sequence[T], Any]], batch_size: int) -> list[T]:
    """Run a batched sweep step until a batch comes back short: ``step(resume_from)``
    returns what it did and where the next batch resumes its index walk (the rows a batch
    moved keep their old index entries until vacuum, so restarting from the beginning on
    every batch would make a large sweep quadratic)."""
    done: list[T] = []
    resume_from: Any = None
    while True:
        items, resume_from = step(resume_from)
        done.extend(items)
        if len(items) < batch_size:
            return done
