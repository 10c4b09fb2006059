"""A waitpoint's timer (shared.durable.service.complete_due): it ends its waitpoint with
the others due by then, in one transaction, and never waits for one another transaction
holds."""

from __future__ import annotations

import time

from sqlalchemy import select, text

from reprise.registry import REGISTRY
from reprise_server.shared.db import discard_after_commit, transaction
from reprise_server.shared.durable import service as durable
from reprise_server.shared.durable.models import Waitpoint, WaitpointBlock
from reprise_server.shared.runs.models import Run
from reprise_server.workers import execution
from tests.support import triggers
from tests.support.fixtures import ProjectKeys

VERSION = "20261122.1"


def _waiting(project: ProjectKeys, seconds: float) -> tuple[str, str]:
    """A run executed up to its wait of ``seconds``: (run id, its waitpoint id)."""
    run_id = triggers.in_db(project, "durable-steps", publish=False, payload={"wait": seconds})
    assert execution.execute_run(run_id, REGISTRY, "worker-a", VERSION).status == "WAITING"
    with transaction() as session:
        waitpoint = session.scalar(
            select(WaitpointBlock.waitpoint_id).where(WaitpointBlock.run_id == run_id)
        )
    assert waitpoint is not None
    return run_id, waitpoint


def _status(model: type[Run | Waitpoint], row_id: str) -> str:
    with transaction() as session:
        return str(session.scalar(select(model.status).where(model.id == row_id)))


def _fire(waitpoint_id: str) -> bool:
    """The timer's task, with a lock wait failing at once instead of hanging the test;
    the runs it queues are not published."""
    with transaction() as session:
        session.execute(text("SET LOCAL lock_timeout = '2s'"))
        fired = durable.complete_due(session, waitpoint_id)
        discard_after_commit(session)
    return fired


def test_a_timer_ends_every_waitpoint_due_with_its_own_and_queues_their_runs(
    project: ProjectKeys,
) -> None:
    due = [_waiting(project, 0.2) for _ in range(3)]
    later_run, later = _waiting(project, 3600)
    time.sleep(0.3)

    assert _fire(due[0][1])

    for run_id, waitpoint in due:
        assert (_status(Waitpoint, waitpoint), _status(Run, run_id)) == ("COMPLETED", "QUEUED")
    assert (_status(Waitpoint, later), _status(Run, later_run)) == ("WAITING", "WAITING")
    # The others' own timers find them ended; the one not due is not ended early.
    assert not _fire(due[1][1])
    assert not _fire(later)


def test_a_timer_skips_a_due_waitpoint_another_transaction_holds(
    project: ProjectKeys,
) -> None:
    (first_run, first), (held_run, held) = (_waiting(project, 0.2) for _ in range(2))
    time.sleep(0.3)

    with transaction() as holder:
        holder.execute(select(Waitpoint.id).where(Waitpoint.id == held).with_for_update())
        assert _fire(first)  # not waiting for the held one: lock_timeout would raise
        assert _status(Run, first_run) == "QUEUED"
        assert _status(Waitpoint, held) == "WAITING"

    assert _fire(held)  # its own timer ends it
    assert (_status(Waitpoint, held), _status(Run, held_run)) == ("COMPLETED", "QUEUED")
