"""Expiry: only due, never-dequeued QUEUED runs; in batches; once under concurrency; by the
sweep or by the worker that dequeues one; and an empty sweep is one index probe."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import func

from reprise.registry import REGISTRY
from reprise_server.shared.db import discard_after_commit, transaction
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import cas
from reprise_server.shared.runs.lifecycle import EXPIRED_MESSAGE
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import trigger_run
from reprise_server.shared.runs.states import RunStatus
from reprise_server.shared.ttl.service import expire_stale_runs
from reprise_server.workers import execution
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, lock_waiters, run_row, wait_for, wait_for_status
from tests.support.statements import captured_statements
from tests.support.tasks import SEEN
from tests.support.timers import (
    InThread,
    backdate,
    buffers_read,
    explain_analyze,
    insert_bulk_runs,
    sql,
)


def sweep(batch_size: int | None = None) -> int:
    with transaction() as session:
        return expire_stale_runs(session, batch_size)


def stale_runs(project: ProjectKeys, count: int) -> list[str]:
    """QUEUED runs with a TTL that passed a moment ago, never dispatched."""
    run_ids = [triggers.in_db(project, ttl="10m", publish=False) for _ in range(count)]
    sql("UPDATE runs SET ttl_expires_at = now() - interval '1 second' WHERE id = ANY(:ids)",
        ids=run_ids)
    return run_ids


def dequeue(session: Any, run_id: str) -> Any:
    """A worker's claim: QUEUED -> DEQUEUED, stamping ``dequeued_at``."""
    return cas.transition(
        session, run_id, RunStatus.DEQUEUED, sources={RunStatus.QUEUED},
        values={"dequeued_at": func.now(), "heartbeat_at": func.now(), "locked_by": "test"},
    )


def test_the_sweep_expires_due_runs_in_batches_and_nothing_else(project: ProjectKeys) -> None:
    # Equal expiry times on purpose: the batch walk must not stall on ties.
    stale = stale_runs(project, 7)
    fresh = triggers.in_db(project, ttl="10m", publish=False)
    no_ttl = triggers.in_db(project, ttl=0, publish=False)
    assert sweep(batch_size=3) == 7
    for run_id in stale:
        run = run_row(run_id)
        assert run.status == "EXPIRED"
        assert run.error == {"message": EXPIRED_MESSAGE}
        assert run.expired_at is not None
        assert run.finished_at == run.expired_at
        assert run.schedule_token == 1
    assert run_row(fresh).status == "QUEUED"
    assert run_row(no_ttl).status == "QUEUED"
    assert run_row(no_ttl).ttl_expires_at is None
    assert sweep() == 0


def test_a_run_dequeued_before_its_ttl_passed_never_expires(project: ProjectKeys) -> None:
    run_id = triggers.in_db(project, ttl="10m", publish=False)
    with transaction() as session:
        dequeue(session, run_id)
        # Handed back to its queue (the worker lacked the task), then its TTL passes.
        cas.transition(session, run_id, RunStatus.QUEUED, sources={RunStatus.DEQUEUED})
    backdate(run_id, "ttl_expires_at")
    assert sweep() == 0
    assert run_row(run_id).status == "QUEUED"
    outcome = execution.execute_run(run_id, REGISTRY, "worker-a", "20261122.1")
    assert outcome.status == "COMPLETED"


def test_a_claim_holding_the_run_makes_the_sweep_skip_it_without_waiting(
    project: ProjectKeys,
) -> None:
    [run_id] = stale_runs(project, 1)
    claimed = threading.Event()
    commit = threading.Event()

    def claim_and_hold() -> None:
        with transaction() as session:
            assert dequeue(session, run_id) is not None
            claimed.set()
            assert commit.wait(15)

    holder = InThread(claim_and_hold)
    assert claimed.wait(15)
    assert InThread(sweep).result() == 0  # SKIP LOCKED: returns at once
    commit.set()
    holder.result()
    assert sweep() == 0
    assert run_row(run_id).status == "DEQUEUED"


def test_a_worker_claiming_while_the_sweep_expires_the_run_does_not_execute_it(
    project: ProjectKeys,
) -> None:
    [run_id] = stale_runs(project, 1)
    expired = threading.Event()
    commit = threading.Event()

    def sweep_and_hold() -> int:
        with transaction() as session:
            count = expire_stale_runs(session)
            expired.set()
            assert commit.wait(15)
            return count

    holder = InThread(sweep_and_hold)
    assert expired.wait(15)
    worker = InThread(lambda: execution.execute_run(run_id, REGISTRY, "worker-a", "20261122.1"))
    wait_for(lambda: lock_waiters() >= 1, what="the claim to wait on the sweep's row lock")
    commit.set()
    assert holder.result() == 1
    assert worker.result().status == "EXPIRED"
    run = run_row(run_id)
    assert (run.status, run.attempt_count, run.dequeued_at) == ("EXPIRED", 0, None)


def test_an_expired_run_dequeued_by_a_worker_is_expired_not_executed(
    project: ProjectKeys, celery_worker: Any
) -> None:
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    with transaction() as session:  # queued, and dispatched after commit, already expired
        run_id = trigger_run(session, auth, "test-echo", "late", TriggerOptions(ttl="10m")).run.id
        cas.touch(session, run_id, ttl_expires_at=func.now() - timedelta(seconds=1))
    run = wait_for_status(run_id, "EXPIRED")
    assert run.error == {"message": EXPIRED_MESSAGE}
    assert (run.attempt_count, run.dequeued_at, run.started_at) == (0, None, None)
    assert run.id not in SEEN


def test_two_sweeps_at_once_expire_each_run_once(project: ProjectKeys) -> None:
    run_ids = stale_runs(project, 40)
    start = threading.Barrier(2)

    def one_sweep() -> int:
        start.wait(15)
        return sweep(batch_size=3)

    first, second = InThread(one_sweep), InThread(one_sweep)
    assert first.result() + second.result() == 40
    rows = sql("SELECT status, schedule_token, count(*) FROM runs WHERE id = ANY(:ids) "
               "GROUP BY 1, 2", ids=run_ids).all()
    assert [tuple(row) for row in rows] == [("EXPIRED", 1, 40)]


def test_an_empty_sweep_is_one_probe_of_the_partial_index(project: ProjectKeys) -> None:
    insert_bulk_runs(project, 20000, "COMPLETED", "-1 hour")
    insert_bulk_runs(project, 2000, "QUEUED", "1 hour")  # in the index, not due
    with captured_statements() as seen:
        assert sweep() == 0
    [(statement, params)] = seen
    plan = explain_analyze(statement, params)
    assert "Index Scan using ix_runs_queued_ttl" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert buffers_read(plan) <= 3, plan  # the index's root and one leaf, no heap page


def test_a_sweep_batch_probes_keys_not_the_table(project: ProjectKeys) -> None:
    insert_bulk_runs(project, 20000, "COMPLETED", "-1 hour")
    insert_bulk_runs(project, 2000, "QUEUED", "1 hour")
    stale_runs(project, 3)
    with captured_statements() as seen, transaction() as session:
        assert expire_stale_runs(session) == 3
        session.rollback()  # keep them stale: the plan below is of a batch that finds them
        discard_after_commit(session)
    [(statement, params)] = [(s, p) for s, p in seen if "UPDATE runs" in s]
    plan = explain_analyze(statement, params)
    assert "Index Scan using ix_runs_queued_ttl" in plan, plan
    assert "pk_runs" in plan, plan  # the update itself: primary-key probes
    assert "Seq Scan" not in plan, plan
    assert "rows=3" in plan, plan
