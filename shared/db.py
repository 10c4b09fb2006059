"""Engine, sessions and the declarative base, and the hot statements run below SQLAlchemy.

Services never commit: the request or task boundary does, with :func:`transaction` (or,
for a run's claim and completion, a unit of single statements, :func:`autocommit`).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from threading import Lock
from typing import Any, Generic, TypeVar

from sqlalchemy import DateTime, MetaData, create_engine, func, select
from sqlalchemy import inspect as inspect_mapped
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, instrumentation, sessionmaker

from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.db")

T = TypeVar("T")
M = TypeVar("M", bound="Base")

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


class Detached(Generic[M]):
    """Builds instances of a mapped class in no session, filled the way the ORM fills an
    object it loads: straight into its dict, not through the constructor's instrumented
    setters (an event per attribute: 48 µs against 2 µs for a run). For rows read or
    written by a statement below SQLAlchemy (:class:`Precompiled`), never added to a
    session: read-only copies."""

    def __init__(self, model: type[M]) -> None:
        attributes = inspect_mapped(model).column_attrs
        self.model = model
        # (attribute name, its column), in the mapper's order.
        self.columns = tuple((attribute.key, attribute.columns[0]) for attribute in attributes)
        self._keys = frozenset(key for key, _ in self.columns)
        self._manager = instrumentation.manager_of_class(model)

    def __call__(self, **values: Any) -> M:
        """An instance whose attributes are ``values`` (by attribute name)."""
        unknown = values.keys() - self._keys
        if unknown:
            raise TypeError(f"{self.model.__name__} has no attribute {min(unknown)!r}")
        instance: M = self._manager.new_instance()
        instance.__dict__.update(values)
        return instance

    def positions(self, columns: Sequence[Any]) -> tuple[tuple[str, int], ...]:
        """Where each attribute's column stands among a statement's ``columns``."""
        where = {id(column): position for position, column in enumerate(columns)}
        return tuple((key, where[id(column)]) for key, column in self.columns)

    def from_row(self, row: Sequence[Any], positions: Sequence[tuple[str, int]]) -> M:
        """An instance from a statement's row (``positions`` from :meth:`positions`)."""
        instance: M = self._manager.new_instance()
        instance.__dict__.update({key: row[position] for key, position in positions})
        return instance


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


@dataclass(frozen=True)
class _Batched:
    publish: Callable[[list[Any]], None]
    item: Any

    def __call__(self) -> None:
        self.publish([self.item])


def on_commit_batched(session: Session, publish: Callable[[list[T]], None], item: T) -> None:
    """:func:`on_commit` of ``publish([item])``, sent together with the other items of the
    same ``publish`` registered before the commit: one call with all of them, in order,
    where the first of them stood (a transaction that queues many runs publishes their
    executions in one round trip). Savepoint scopes drop their items as they drop any
    callback."""
    on_commit(session, _Batched(publish, item))


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
    for callback in _batched(callbacks):
        try:
            callback()
        except Exception:
            log.warning("publish after commit failed; the sweep will retry it", exc_info=True)


def _batched(callbacks: list[AfterCommit]) -> list[AfterCommit]:
    if sum(isinstance(callback, _Batched) for callback in callbacks) < 2:
        return callbacks
    merged: list[AfterCommit] = []
    items: dict[Callable[[list[Any]], None], list[Any]] = {}
    for callback in callbacks:
        if not isinstance(callback, _Batched):
            merged.append(callback)
        elif callback.publish in items:
            items[callback.publish].append(callback.item)
        else:
            items[callback.publish] = batch = [callback.item]
            merged.append(functools.partial(callback.publish, batch))
    return merged


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
    session = session_factory()()
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
        session.close()
    run_after_commit(session)


class Precompiled:
    """A Core statement compiled once for the engine's dialect, to be executed on the
    driver's connection, below SQLAlchemy: alone in autocommit (:class:`Autocommit`) or
    in a session's transaction (:func:`first_in`).

    For the statements every run makes (its insert, its claim, its completion, the other
    prepared moves): SQLAlchemy's execution around a cached statement (a Session, an
    execution context, a result built from the cursor's description, the connection's
    isolation level set and reset) cost more CPU than the driver's execution of it. What
    SQLAlchemy would have done to the values is done here too, from the same types: bind
    processors on the way in (``JSONB`` values wrapped, statuses as strings), result
    processors on the way out (statuses as their enum), Python-side column defaults.
    Bound lists that SQLAlchemy would expand at each execution (``IN`` over a list of
    bound values) are refused when compiled.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: tuple[Dialect, _Compiled] | None = None

    def compiled(self, dialect: Dialect) -> _Compiled:
        done = self._compiled
        if done is None or done[0] is not dialect:
            done = self._compiled = (dialect, _Compiled.of(self.statement, dialect))
        return done[1]


@dataclass
class _Compiled:
    sql: str
    defaults: dict[str, Any]
    computed: tuple[tuple[str, Callable[[Any], Any]], ...]
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]
    columns: tuple[Any, ...]
    # By position, from the driver's column types: known once the statement has run.
    results: tuple[tuple[int, Callable[[Any], Any]], ...] | None = None

    @classmethod
    def of(cls, statement: Any, dialect: Dialect) -> _Compiled:
        compiled = statement.compile(dialect=dialect)
        sql = compiled.string
        if "POSTCOMPILE" in sql or compiled.escaped_bind_names:
            raise ValueError(f"not precompilable (expanding or escaped binds): {sql[:80]}")
        defaults = dict(compiled.params)
        # Column defaults SQLAlchemy computes in Python at each execution: the scalar ones
        # are constants, the callable ones are called at each execution, as SQLAlchemy
        # does, but with no execution context (refused if they would read one).
        computed = []
        for column, default in [*((c, c.default) for c in compiled.insert_prefetch),
                                *((c, c.onupdate) for c in compiled.update_prefetch)]:
            if default is None or column.key not in defaults or not (
                default.is_scalar or (default.is_callable and _without_context(default))
            ):
                raise ValueError(f"not precompilable (Python default of {column.key}): {sql[:80]}")
            if default.is_scalar:
                defaults[column.key] = default.arg
            else:
                computed.append((column.key, default.arg))
        binds = []
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                binds.append((name, processor))
        return cls(sql, defaults, tuple(computed), tuple(binds),
                   tuple(statement.exported_columns))

    def result_processors(
        self, dialect: Dialect, description: Any
    ) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
        if self.results is None:
            results = []
            for position, (column, described) in enumerate(
                zip(self.columns, description, strict=True)
            ):
                type_ = column.type.dialect_impl(dialect)
                processor = type_.result_processor(dialect, described.type_code)
                if processor is not None:
                    results.append((position, processor))
            self.results = tuple(results)
        return self.results


def _without_context(default: Any) -> bool:
    """Whether a callable column default takes no execution context (SQLAlchemy wraps such
    a function in one that drops the context it is given)."""
    original = getattr(default.arg, "__wrapped__", None)
    if original is None:
        return False
    return all(
        parameter.default is not parameter.empty
        or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        for parameter in inspect.signature(original).parameters.values()
    )


class Autocommit:
    """A pooled connection in autocommit: each statement commits on its own (see
    :func:`autocommit`)."""

    def __init__(self, engine: Engine, connection: Any) -> None:
        self._engine = engine
        self._connection = connection  # the pool's proxy of the driver's connection

    def first(self, statement: Precompiled, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """Execute ``statement`` with ``params``; its first row, processed, or None (no row,
        or a statement that returns none).

        Driver errors come out as SQLAlchemy's (``OperationalError``, ``IntegrityError``
        …), and a connection they show lost is invalidated with every older one in the
        pool, as SQLAlchemy's own execution does."""
        return _first(self._engine, self._connection, statement, params)


def first_in(
    session: Session, statement: Precompiled, params: dict[str, Any]
) -> tuple[Any, ...] | None:
    """:meth:`Autocommit.first` in ``session``'s transaction: ``statement`` executed on the
    driver connection the session holds (taken, and the transaction begun, if it held
    none), below SQLAlchemy. Committed or rolled back with the rest of the session."""
    connection = session.connection()
    return _first(connection.engine, connection.connection, statement, params)


def all_in(
    session: Session, statement: Precompiled, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Every row of ``statement``, processed, executed as :func:`first_in` executes it."""
    connection = session.connection()
    return _executed(connection.engine, connection.connection, statement, params, many=True)


def _first(
    engine: Engine, connection: Any, statement: Precompiled, params: dict[str, Any]
) -> tuple[Any, ...] | None:
    rows = _executed(engine, connection, statement, params, many=False)
    return rows[0] if rows else None


def _executed(
    engine: Engine, connection: Any, statement: Precompiled, params: dict[str, Any], *,
    many: bool,
) -> list[tuple[Any, ...]]:
    dialect = engine.dialect
    compiled = statement.compiled(dialect)
    values = {**compiled.defaults, **params}
    for name, default in compiled.computed:
        values[name] = default(None)
    for name, processor in compiled.binds:
        values[name] = processor(values[name])
    cursor = connection.cursor()
    sent = engine.dispatch.before_cursor_execute
    if sent:  # whoever observes the engine's statements sees these too (no Connection)
        sent(None, cursor, compiled.sql, values, None, False)
    try:
        cursor.execute(compiled.sql, values)
        if not compiled.columns:  # a statement that returns nothing
            return []
        if many:
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        else:
            row = cursor.fetchone()
            rows = [] if row is None else [row]
        results = compiled.results
        if results is None:
            results = compiled.result_processors(dialect, cursor.description)
    except dialect.loaded_dbapi.Error as exc:
        raise _translated(engine, exc, compiled.sql, values, connection, cursor) from exc
    finally:
        cursor.close()
    if not results:
        return rows
    processed = []
    for row in rows:
        values_of_row = list(row)
        for position, processor in results:
            values_of_row[position] = processor(values_of_row[position])
        processed.append(tuple(values_of_row))
    return processed


def _translated(
    engine: Engine, exc: Any, sql: str | None, values: dict[str, Any] | None,
    connection: Any, cursor: Any,
) -> Exception:
    """``exc`` of the driver as SQLAlchemy raises it (a server that cannot be reached is an
    ``OperationalError``); a lost ``connection`` is invalidated, with every older one."""
    dialect = engine.dialect
    lost = dialect.is_disconnect(exc, connection, cursor)
    if lost and connection is not None:
        engine.pool._invalidate(connection, exc)
    error: Exception = DBAPIError.instance(
        sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost,
        dialect=dialect,
    )
    return error


@contextmanager
def autocommit() -> Iterator[Autocommit]:
    """A unit of work of single statements, each atomic and committed on its own: a
    compare-and-set move that writes its related rows in data-modifying CTEs needs no
    transaction around it, whose BEGIN and COMMIT would cost two more round trips. A run's
    claim and its completion are such moves (:class:`Precompiled`). Reads may follow a
    write (under READ COMMITTED each statement of a transaction takes its own snapshot
    anyway); a second write would commit apart from the first, so a caller that needs two
    writes together takes :func:`transaction` instead.

    What would run after a commit runs after the statement: it has committed. Failing to
    connect raises what SQLAlchemy raises (a transient ``OperationalError``)."""
    engine = get_engine()
    driver_error = engine.dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
    except driver_error as exc:  # the server is down, or refuses connections
        raise _translated(engine, exc, None, None, None, None) from exc
    try:
        driver: Any = connection.driver_connection
        try:
            driver.autocommit = True
        except driver_error as exc:  # a connection the server dropped
            raise _translated(engine, exc, None, None, connection, None) from exc
        try:
            yield Autocommit(engine, connection)
        finally:
            if not driver.closed:
                try:  # back to the pool as transactional as it came
                    driver.autocommit = False
                except driver_error as exc:  # broken meanwhile
                    connection.invalidate(exc)
    finally:
        connection.close()


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
