"""Units of work (``shared.db``): callbacks run once committed and are dropped with what
failed; an autocommit unit commits each statement at once, below SQLAlchemy, and gives its
connection back to the pool as transactional as it came."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
    bindparam,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from reprise_server.shared.db import (
    Precompiled,
    after_commit_scope,
    autocommit,
    discard_after_commit,
    first_in,
    get_engine,
    on_commit,
    on_commit_batched,
    transaction,
)
from reprise_server.shared.runs.models import StatusColumn
from reprise_server.shared.runs.states import RunStatus
from reprise_server.workers.transient import is_transient
from tests.support.statements import sent_statements


class Boom(Exception):
    pass


def _fail_in_transaction(register: Callable[[], None]) -> None:
    with transaction() as session:
        on_commit(session, register)
        raise Boom()


def _fail_in_scope(session: Session, register: Callable[[], None]) -> None:
    with after_commit_scope(session):
        on_commit(session, register)
        raise Boom()


def _batch_in_failing_scope(
    session: Session, publish: Callable[[list[str]], None], item: str
) -> None:
    with after_commit_scope(session):
        on_commit_batched(session, publish, item)
        raise Boom()


def test_callbacks_run_after_commit_and_not_after_a_rollback() -> None:
    ran: list[str] = []
    with transaction() as session:
        on_commit(session, lambda: ran.append("committed"))
        assert ran == []
    with pytest.raises(Boom):
        _fail_in_transaction(lambda: ran.append("rolled back"))
    assert ran == ["committed"]


def test_a_scope_that_raises_drops_only_its_own_callbacks() -> None:
    ran: list[str] = []
    with transaction() as session:
        on_commit(session, lambda: ran.append("before"))
        with pytest.raises(Boom):
            _fail_in_scope(session, lambda: ran.append("inside, failed"))
        with after_commit_scope(session):
            on_commit(session, lambda: ran.append("inside, done"))
        on_commit(session, lambda: ran.append("after"))
    assert ran == ["before", "inside, done", "after"]


def test_batched_callbacks_of_one_commit_go_out_in_one_call_where_the_first_stood() -> None:
    ran: list[object] = []

    def publish(items: list[str]) -> None:
        ran.append(list(items))

    def other(items: list[str]) -> None:
        ran.append(("other", list(items)))

    with transaction() as session:
        on_commit(session, lambda: ran.append("before"))
        on_commit_batched(session, publish, "a")
        on_commit(session, lambda: ran.append("between"))
        with pytest.raises(Boom):
            _batch_in_failing_scope(session, publish, "dropped with its scope")
        on_commit_batched(session, other, "x")
        on_commit_batched(session, publish, "b")
    assert ran == ["before", ["a", "b"], "between", ("other", ["x"])]
    ran.clear()
    with transaction() as session:
        on_commit_batched(session, publish, "alone")
    assert ran == [["alone"]]


def test_discarded_callbacks_never_run() -> None:
    ran: list[str] = []
    with transaction() as session:
        on_commit(session, lambda: ran.append("discarded"))
        discard_after_commit(session)
        on_commit(session, lambda: ran.append("kept"))
    assert ran == ["kept"]


@pytest.fixture
def scratch_table() -> str:
    name = f"scratch_{secrets.token_hex(4)}"
    with transaction() as session:
        session.execute(text(f"CREATE TABLE {name} (n int)"))
    return name


def _rows(table: str) -> list[int]:
    with transaction() as session:
        return list(session.execute(text(f"SELECT n FROM {table} ORDER BY n")).scalars())


def _scratch(name: str) -> Table:
    return Table(name, MetaData(), Column("n", Integer), Column("doc", JSONB),
                 Column("status", StatusColumn(RunStatus, 20)))


def test_an_autocommit_unit_commits_each_statement_at_once(scratch_table: str) -> None:
    with transaction() as session:
        session.execute(text(
            f"ALTER TABLE {scratch_table} ADD COLUMN doc jsonb, ADD COLUMN status varchar(20)"))
    table = _scratch(scratch_table)
    write = Precompiled(
        insert(table).values(n=1, doc=literal({"ok": [1, None]}, JSONB),
                             status=RunStatus.QUEUED)
        .returning(table.c.n, table.c.doc, table.c.status, func.now())
    )
    with autocommit() as unit:
        n, doc, status, _ = unit.first(write, {}) or ()
        # Committed by the statement itself: another session sees it already.
        assert _rows(scratch_table) == [1]
    # What SQLAlchemy would bind and load: JSON in and out, the status as its enum.
    assert (n, doc, status) == (1, {"ok": [1, None]}, RunStatus.QUEUED)
    assert isinstance(status, RunStatus)


def _write_twice_and_fail(table: str) -> None:
    with transaction() as session:
        session.execute(text(f"INSERT INTO {table} VALUES (2)"))
        session.execute(text(f"INSERT INTO {table} VALUES (3)"))
        raise Boom()


def test_a_connection_back_from_an_autocommit_unit_is_transactional(
    scratch_table: str,
) -> None:
    write = Precompiled(insert(_scratch(scratch_table)).values(n=1))
    with autocommit() as unit:
        unit.first(write, {})
    # The pool hands the same connection out again (the last one returned): its
    # transactions roll back as any other's, and it may write twice.
    with pytest.raises(Boom):
        _write_twice_and_fail(scratch_table)
    assert _rows(scratch_table) == [1]


def test_an_autocommit_unit_raises_driver_errors_as_sqlalchemy_does(scratch_table: str) -> None:
    with transaction() as session:
        session.execute(text(f"ALTER TABLE {scratch_table} ADD PRIMARY KEY (n)"))
    write = Precompiled(insert(_scratch(scratch_table)).values(n=1))
    with autocommit() as unit:
        unit.first(write, {})
        with pytest.raises(IntegrityError):
            unit.first(write, {})
        # The unit goes on: a failed statement in autocommit leaves no transaction behind.
        assert unit.first(Precompiled(select(literal(2))), {}) == (2,)
    assert _rows(scratch_table) == [1]


def test_a_connection_lost_under_an_autocommit_unit_is_a_transient_error_and_is_replaced(
) -> None:
    pid = Precompiled(select(func.pg_backend_pid()))
    with autocommit() as unit:
        row = unit.first(pid, {})
        assert row is not None
        with transaction() as session:  # the server drops that connection
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": row[0]})
        with pytest.raises(OperationalError) as lost:
            unit.first(pid, {})
    assert is_transient(lost.value)
    assert lost.value.connection_invalidated
    # The pool let go of it (and of every connection as old): the next unit connects anew.
    with autocommit() as unit:
        again = unit.first(pid, {})
    assert again is not None
    assert again[0] != row[0]
    assert get_engine().pool.checkedout() == 0


def test_precompiled_fills_python_column_defaults_as_sqlalchemy_would(
    scratch_table: str,
) -> None:
    """SQLAlchemy computes Python-side column defaults at each execution: a precompiled
    statement writes the constant ones, calls the functions that take no execution context
    (each time), and refuses to be built over one that would read a context rather than
    insert NULL in its place."""
    with transaction() as session:
        session.execute(text(f"ALTER TABLE {scratch_table} ADD COLUMN m int, ADD COLUMN l int"))
    calls = iter(range(100, 200))
    table = Table(scratch_table, MetaData(), Column("n", Integer, default=7),
                  Column("m", Integer), Column("l", Integer, default=lambda: next(calls)))
    statement = Precompiled(insert(table).values(m=bindparam("m")))
    with transaction() as session:
        assert first_in(session, statement, {"m": 1}) is None
        assert first_in(session, statement, {"m": 2}) is None
    with transaction() as session:
        rows = session.execute(text(f"SELECT n, m, l FROM {scratch_table} ORDER BY m")).all()
    assert [tuple(row) for row in rows] == [(7, 1, 100), (7, 2, 101)]
    with_context = Table(scratch_table, MetaData(), Column("n", Integer),
                         Column("l", Integer, default=lambda context: 1))
    with autocommit() as unit, pytest.raises(ValueError, match="Python default of l"):
        unit.first(Precompiled(insert(with_context).values(n=1)), {})


def test_statements_run_below_sqlalchemy_are_announced_to_the_engines_listeners() -> None:
    """Whatever observes the engine's statements (tracing, statement logs, the tests'
    statement counts) sees the precompiled ones too."""
    with sent_statements() as seen, autocommit() as unit:
        unit.first(Precompiled(select(literal(41) + 1)), {})
    assert len(seen) == 1
    assert seen[0].startswith("SELECT")
