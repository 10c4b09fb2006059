"""Execution on a real worker: attempts, retries, timeouts, cancel, crash recovery, delays."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, update

from reprise.registry import REGISTRY
from reprise_server.shared.db import discard_after_commit, transaction
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import attempts as steps
from reprise_server.shared.runs import attempts_repository as repo
from reprise_server.shared.runs.lifecycle import redispatch_lost
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import cancel_run, trigger_run
from reprise_server.shared.timers.service import promote_due_runs
from reprise_server.workers import execution
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for, wait_for_status
from tests.support.tasks import gate


def auth_of(project: ProjectKeys, env: str = "dev") -> AuthContext:
    return AuthContext(project.project_id, project.environment_ids[env], env)


def attempts(run_id: str) -> list[Any]:
    with transaction() as session:
        return repo.attempts_of(session, [run_id])[run_id]


def test_success_records_output_attempt_duration_and_cost(
    project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "test-echo", payload={"x": 1})
    run = wait_for_status(run_id, "COMPLETED")
    assert run.output == {"payload": {"x": 1}, "attempt": 1, "isReplay": False}
    assert run.version == "20261122.1"
    assert run.started_at
    assert run.finished_at
    assert run.dequeued_at
    assert run.duration_ms >= 0
    assert run.base_cost_in_cents > 0
    [attempt] = attempts(run_id)
    assert attempt.status == "COMPLETED"
    assert attempt.id.startswith("attempt_")


def test_failures_retry_with_backoff_until_success(project: ProjectKeys, celery_worker: Any) -> None:
    run_id = triggers.in_db(project, "test-fail-until", payload={"succeedOn": 3})
    run = wait_for_status(run_id, "COMPLETED")
    assert run.output == {"attempt": 3}
    assert [a.status for a in attempts(run_id)] == ["FAILED", "FAILED", "COMPLETED"]


def test_failures_past_max_attempts_end_failed(project: ProjectKeys, celery_worker: Any) -> None:
    run_id = triggers.in_db(project, "test-fail-until", payload={}, maxAttempts=2)
    run = wait_for_status(run_id, "FAILED")
    assert run.error["name"] == "ValueError"
    assert "failing attempt 2" in run.error["message"]
    assert [a.status for a in attempts(run_id)] == ["FAILED", "FAILED"]


def test_max_duration_ends_timed_out(project: ProjectKeys, celery_worker: Any) -> None:
    run_id = triggers.in_db(project, "test-block", payload={"gate": "timeout-test"}, maxDuration=1)
    run = wait_for_status(run_id, "TIMED_OUT")
    assert "maxDuration" in run.error["message"]
    assert run.finished_at is not None


def test_cancel_of_an_executing_run_stops_the_task(project: ProjectKeys, celery_worker: Any) -> None:
    run_id = triggers.in_db(project, "test-block", payload={"gate": "cancel-test"})
    assert gate("cancel-test:started").wait(15)
    with transaction() as session:
        assert cancel_run(session, run_id) is not None
    wait_for(
        lambda: attempts(run_id) and attempts(run_id)[0].status == "CANCELED",
        what="the attempt to be canceled",
    )
    assert run_row(run_id).status == "CANCELED"
    assert not gate("cancel-test:release").is_set()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "output.rows[0].ratio is NaN, which JSON cannot carry"),
        ({"checkpoint": True}, "checkpoint state.ratio is NaN, which JSON cannot carry"),
    ],
)
def test_an_output_or_checkpoint_postgres_cannot_store_fails_the_run_naming_it(
    project: ProjectKeys, payload: dict[str, Any], message: str
) -> None:
    run_id = triggers.in_db(project, "test-unstorable", payload=payload, publish=False)

    outcome = execution.execute_run(run_id, REGISTRY, "worker-a", "20261122.1")

    assert outcome.status == "FAILED"
    run = run_row(run_id)
    assert run.output is None
    assert run.error["message"] == message


def test_a_run_is_claimed_once_by_concurrent_deliveries(project: ProjectKeys) -> None:
    """Two deliveries of the same message race; exactly one claims the run."""
    from tests.support.tasks import SEEN

    # No message reaches the worker: the two threads below are the two deliveries.
    run_id = triggers.in_db(project, "test-echo", publish=False)
    barrier = threading.Barrier(2)
    outcomes: list[steps.Outcome] = []

    def deliver(name: str) -> None:
        barrier.wait()
        outcomes.append(execution.execute_run(run_id, REGISTRY, name, "20261122.1"))

    threads = [threading.Thread(target=deliver, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.detail for o in outcomes) == ["", "not claimed"]
    assert run_row(run_id).status == "COMPLETED"
    assert len(SEEN[run_id]) == 1
    assert len(attempts(run_id)) == 1


@pytest.mark.parametrize(
    ("task", "outcome", "attempt_statuses"),
    [
        ("test-fail-until", "COMPLETED", ["FAILED", "COMPLETED"]),
        ("test-echo", "CRASHED", ["FAILED"]),  # max_attempts=1: no attempt left
    ],
)
def test_run_of_a_dead_worker_is_reclaimed_after_its_heartbeat_goes_stale(
    project: ProjectKeys, task: str, outcome: str, attempt_statuses: list[str]
) -> None:
    run_id = triggers.in_db(project, task, payload={"succeedOn": 1}, publish=False)
    # Worker A claims and starts the run, then "dies" (never finishes, never heartbeats).
    with transaction() as session:
        assert not isinstance(steps.claim_run(session, run_id, "dead-worker"), steps.Outcome)
    with transaction() as session:
        assert steps.begin_attempt(session, run_id, "dead-worker", "20261122.1") is not None
    # While its heartbeat is fresh, another delivery does not steal it.
    assert execution.execute_run(run_id, REGISTRY, "other", "20261122.1").detail == "not claimed"
    with transaction() as session:
        session.execute(
            update(Run).where(Run.id == run_id).values(
                heartbeat_at=func.now() - timedelta(seconds=60),
                dispatched_at=func.now() - timedelta(seconds=120),
            )
        )
        assert redispatch_lost(session) == 1
        discard_after_commit(session)  # this test delivers the republished message itself
    assert execution.execute_run(run_id, REGISTRY, "other", "20261122.1").status == outcome
    assert [a.status for a in attempts(run_id)] == attempt_statuses
    assert attempts(run_id)[0].error["name"] == "WorkerLost"


def test_lost_dispatch_is_republished_by_the_recovery_sweep(
    project: ProjectKeys, celery_worker: Any
) -> None:
    with transaction() as session:
        run = trigger_run(session, auth_of(project), "test-echo", 7, TriggerOptions()).run
        discard_after_commit(session)  # the publish after commit is "lost"
        session.execute(
            update(Run).where(Run.id == run.id).values(dispatched_at=func.now() - timedelta(hours=1))
        )
    with transaction() as session:
        assert redispatch_lost(session) == 1
    assert wait_for_status(run.id, "COMPLETED").output["payload"] == 7


def test_a_worker_expires_a_run_whose_ttl_passed_instead_of_running_it(project: ProjectKeys) -> None:
    run_id = triggers.in_db(project, "test-echo", publish=False, ttl="1s")
    with transaction() as session:
        session.execute(
            update(Run).where(Run.id == run_id).values(ttl_expires_at=func.now() - timedelta(seconds=1))
        )
    assert execution.execute_run(run_id, REGISTRY, "w", "v").status == "expired"
    run = run_row(run_id)
    assert run.status == "EXPIRED"
    assert run.expired_at is not None
    assert run.error == {"message": "Run expired because the TTL was reached"}
    assert attempts(run_id) == []


def test_delayed_run_is_promoted_by_the_sweep_when_due_and_executes(
    project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "test-echo", payload="later", delay="1h")
    run = run_row(run_id)
    assert run.status == "DELAYED"
    assert run.queued_at is None
    with transaction() as session:
        assert promote_due_runs(session).promoted == 0
        session.execute(
            update(Run).where(Run.id == run_id).values(delayed_until=func.now() - timedelta(seconds=1))
        )
    with transaction() as session:
        assert promote_due_runs(session).promoted == 1
    run = wait_for_status(run_id, "COMPLETED")
    assert run.queued_at is not None
    assert run.queued_at >= run.delayed_until
    with transaction() as session:
        assert promote_due_runs(session).promoted == 0


def test_runs_of_a_queue_whose_head_cannot_be_read_are_not_republished_as_lost(
    project: ProjectKeys,
) -> None:
    """A message without Reprise's publish stamp (an older publisher's, during an upgrade)
    at the head of a queue leaves its old queued runs alone until it is consumed; an empty
    queue (FLUSHALL empties it at once) holds nothing, so they are republished. The
    evidence of stamped queues: tests/shared/runs/test_lost_dispatches.py."""
    from reprise_server.shared.broker import broker_client, run_queue
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    queue = f"backlog-{project.slug}"
    run_id = triggers.in_db(project, "test-echo", publish=False, queue=queue)
    with transaction() as session:
        session.execute(
            update(Run).where(Run.id == run_id).values(dispatched_at=func.now() - timedelta(hours=1))
        )
    client = broker_client(settings.redis_url)
    name = run_queue(settings, queue)
    client.rpush(name, "a message still waiting")
    try:
        with transaction() as session:
            assert redispatch_lost(session) == 0
    finally:
        client.delete(name)
    with transaction() as session:
        assert redispatch_lost(session) == 1
        discard_after_commit(session)


def test_a_first_attempt_is_claimed_and_started_in_one_move_only_when_nothing_needs_checking(
    project: ProjectKeys,
) -> None:
    """The one-move claim takes a queued, never-attempted run whose task the worker has,
    not locked to another version, TTL not passed; every other run goes the long way."""

    def one_move(run_id: str, tasks: list[str], version: str = "v1") -> bool:
        with transaction() as session:
            return steps.claim_and_begin(session, run_id, "w1", version, tasks) is not None

    def queued(**values: Any) -> str:
        run_id = triggers.in_db(project, "test-echo", publish=False)
        if values:
            with transaction() as session:
                session.execute(update(Run).where(Run.id == run_id).values(**values))
        return run_id

    assert not one_move(queued(), ["test-other"])  # the worker lacks the task
    assert not one_move(queued(locked_version="v2"), ["test-echo"])  # locked elsewhere
    assert not one_move(queued(attempt_count=1), ["test-echo"])  # an attempt may be open
    assert not one_move(queued(ttl_expires_at=func.now() - timedelta(seconds=1)), ["test-echo"])
    assert one_move(queued(locked_version="v1"), ["test-echo"])
    run_id = queued()
    assert one_move(run_id, ["test-echo"])
    assert not one_move(run_id, ["test-echo"])  # held now: never taken twice
    run = run_row(run_id)
    assert (run.status, run.locked_by, run.attempt_count, run.version) == ("EXECUTING", "w1", 1, "v1")
    assert run.dequeued_at is not None
    assert run.started_at is not None
    assert [(a.number, a.status, a.worker) for a in attempts(run_id)] == [(1, "EXECUTING", "w1")]


def test_a_run_due_to_time_out_before_the_heartbeat_thread_wakes_wakes_it() -> None:
    """Starting a run wakes the process's heartbeat thread only when the run must be looked
    at sooner than the thread would wake: here its maxDuration (0.3 s) falls long before
    its first beat (an hour) and before anything else the thread waits for."""
    from reprise_server.workers.execution import Heartbeat, RunTimedOut

    asleep = Heartbeat("run_idle", "worker-a", threading.get_ident(), None, 3600)
    asleep.start()  # the thread now sleeps until this one's beat, an hour away (or sooner)
    interrupted = threading.Event()

    def task() -> None:
        try:
            while not interrupted.is_set():
                time.sleep(0.01)
        except RunTimedOut:
            interrupted.set()

    thread = threading.Thread(target=task)
    thread.start()
    assert thread.ident is not None
    timing_out = Heartbeat("run_short", "worker-a", thread.ident, 0.3, 3600)
    timing_out.start()
    try:
        assert interrupted.wait(30), "the heartbeat thread slept past the run's maxDuration"
        assert timing_out.interrupted is RunTimedOut
    finally:
        timing_out.stop()
        asleep.stop()
        thread.join(5)
