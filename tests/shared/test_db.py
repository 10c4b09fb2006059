"""Units of work (``shared.db``): callbacks run once committed and are dropped with what
failed; a single-statement unit writes once, in autocommit."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from reprise_server.shared.db import (
    SecondWrite,
    after_commit_scope,
    discard_after_commit,
    on_commit,
    single_statement,
    transaction,
)


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


def _write_twice_alone(table: str, ran: list[str]) -> None:
    with single_statement() as session:
        session.execute(text(f"INSERT INTO {table} VALUES (1)"))
        # Committed by the statement itself: another session sees it already.
        assert _rows(table) == [1]
        assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 1
        on_commit(session, lambda: ran.append("published"))
        session.execute(text(f"INSERT INTO {table} VALUES (2)"))


def test_a_single_statement_unit_commits_its_write_at_once_and_refuses_a_second(
    scratch_table: str,
) -> None:
    ran: list[str] = []
    with pytest.raises(SecondWrite):
        _write_twice_alone(scratch_table, ran)
    assert _rows(scratch_table) == [1]  # the second write never ran
    assert ran == []  # and the unit that raised published nothing


def _write_twice_and_fail(table: str) -> None:
    with transaction() as session:
        session.execute(text(f"INSERT INTO {table} VALUES (2)"))
        session.execute(text(f"INSERT INTO {table} VALUES (3)"))
        raise Boom()


def test_a_connection_back_from_a_single_statement_unit_is_transactional(
    scratch_table: str,
) -> None:
    with single_statement() as session:
        session.execute(text(f"INSERT INTO {scratch_table} VALUES (1)"))
    # The pool hands the same connection out again (the last one returned): its
    # transactions roll back as any other's, and it may write twice.
    with pytest.raises(Boom):
        _write_twice_and_fail(scratch_table)
    assert _rows(scratch_table) == [1]
