"""Callbacks after commit (``shared.db``): run once committed, dropped with what failed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from reprise_server.shared.db import (
    after_commit_scope,
    discard_after_commit,
    on_commit,
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
