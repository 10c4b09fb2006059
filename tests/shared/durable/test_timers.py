"""A waitpoint's timer (shared.durable.service.complete_due): it ends its waitpoint with
the others due by then, in one transaction, and never waits for one another transaction
holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from reprise.registry import REGISTRY
from reprise_server.shared.db import discard_after_commit, transaction
from reprise_server.shared.durable import service as durable
from reprise_server.shared.durable.models import Waitpoint, WaitpointBlock
from reprise_server.shared.runs.models import Run
from reprise_server.workers import execution
from tests.support import triggers
from tests.support.fixtures import ProjectKeys

VERSION = "20261122.1"


def _waiting(project: ProjectKeys) -> tuple[str, str]:
    """A run executed up to a wait of an hour: (run id, its waitpoint id). Its timer is not
    armed (due past the horizon), so only these tests end it: other tests' control
    processes consume the timers queue."""
    run_id = triggers.in_db(project, "durable-steps", publish=False, payload={"wait": 3600})
    assert execution.execute_run(run_id, REGISTRY, "worker-a", VERSION).status == "WAITING"
    with transaction() as session:
        waitpoint = session.scalar(
            select(WaitpointBlock.waitpoint_id).where(WaitpointBlock.run_id == run_id)
        )
    assert waitpoint is not None
    return run_id, waitpoint


def _make_due(session: Session, waitpoint_ids: list[str]) -> None:
    """Due long ago, in this order (before any other due waitpoint of the database)."""
    for n, waitpoint_id in enumerate(waitpoint_ids):
        session.execute(update(Waitpoint).where(Waitpoint.id == waitpoint_id).values(
            complete_after=datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=n)))


def _status(model: type[Run | Waitpoint], row_id: str) -> str:
    with transaction() as session:
        return str(session.scalar(select(model.status).where(model.id == row_id)))


def _fire(waitpoint_id: str, due: list[str] | None = None) -> bool:
    """The timer's task (``due`` made due first, in its transaction: no other transaction
    sees them due before it ends), with a lock wait failing at once instead of hanging the
    test; the runs it queues are not published."""
    with transaction() as session:
        session.execute(text("SET LOCAL lock_timeout = '2s'"))
        _make_due(session, due or [])
        fired = durable.complete_due(session, waitpoint_id)
        discard_after_commit(session)
    return fired


def test_a_timer_ends_every_waitpoint_due_with_its_own_and_queues_their_runs(
    project: ProjectKeys,
) -> None:
    due = [_waiting(project) for _ in range(3)]
    later_run, later = _waiting(project)

    assert _fire(due[0][1], [waitpoint for _, waitpoint in due])

    for run_id, waitpoint in due:
        assert (_status(Waitpoint, waitpoint), _status(Run, run_id)) == ("COMPLETED", "QUEUED")
    assert (_status(Waitpoint, later), _status(Run, later_run)) == ("WAITING", "WAITING")
    # The others' own timers find them ended; the one not due is not ended early.
    assert not _fire(due[1][1])
    assert not _fire(later)


def test_a_timer_skips_a_due_waitpoint_another_transaction_holds(
    project: ProjectKeys,
) -> None:
    (first_run, first), (held_run, held) = (_waiting(project) for _ in range(2))
    with transaction() as session:
        _make_due(session, [held])

    with transaction() as holder:
        holder.execute(select(Waitpoint.id).where(Waitpoint.id == held).with_for_update())
        assert _fire(first, [first])  # not waiting for the held one: lock_timeout would raise
        assert _status(Run, first_run) == "QUEUED"
        assert _status(Waitpoint, held) == "WAITING"

    assert _fire(held)  # its own timer ends it
    assert (_status(Waitpoint, held), _status(Run, held_run)) == ("COMPLETED", "QUEUED")


def test_a_timer_whose_own_waitpoint_another_transaction_holds_neither_waits_nor_rearms(
    project: ProjectKeys, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The holder (a sweep, another timer's batch) is ending it: the timer returns at once,
    its thread free for the next timer, and arms no timer again for a due waitpoint."""
    run_id, held = _waiting(project)
    with transaction() as session:
        _make_due(session, [held])
    armed: list[tuple[str, float]] = []
    monkeypatch.setattr(durable.broker, "arm_waitpoint_timer_in",
                        lambda waitpoint_id, seconds: armed.append((waitpoint_id, seconds)))

    with transaction() as holder:
        holder.execute(select(Waitpoint.id).where(Waitpoint.id == held).with_for_update())
        with transaction() as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert not durable.complete_due(session, held)
    assert armed == []
    assert (_status(Waitpoint, held), _status(Run, run_id)) == ("WAITING", "WAITING")

    assert _fire(held)  # released: its timer, delivered again, or the sweep ends it


def test_a_timer_that_fires_early_arms_itself_again_for_the_rest(
    project: ProjectKeys, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, waitpoint = _waiting(project)
    armed: list[tuple[str, float]] = []
    monkeypatch.setattr(durable.broker, "arm_waitpoint_timer_in",
                        lambda waitpoint_id, seconds: armed.append((waitpoint_id, seconds)))
    with transaction() as session:
        assert not durable.complete_due(session, waitpoint)
    [(again, seconds)] = armed
    assert again == waitpoint
    assert 3500 < seconds <= 3600


def test_the_sweep_ends_due_waitpoints_together_and_skips_the_held_ones(
    project: ProjectKeys,
) -> None:
    due = [_waiting(project) for _ in range(3)]
    held_run, held = _waiting(project)
    with transaction() as session:
        _make_due(session, [held, *(waitpoint for _, waitpoint in due)])

    with transaction() as holder:
        holder.execute(select(Waitpoint.id).where(Waitpoint.id == held).with_for_update())
        with transaction() as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            result = durable.complete_due_waitpoints(session, batch_size=2)
            discard_after_commit(session)
        assert result.completed >= 3
        for run_id, waitpoint in due:
            assert (_status(Waitpoint, waitpoint), _status(Run, run_id)) == ("COMPLETED", "QUEUED")
        assert (_status(Waitpoint, held), _status(Run, held_run)) == ("WAITING", "WAITING")
