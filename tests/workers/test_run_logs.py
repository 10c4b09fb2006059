"""Run logs captured on a real worker: what a task logs and prints, from every place it can,
written in batches before the run's outcome; the cap, retention, a kill -9 mid-run."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from reprise_server.shared.db import db_now, transaction
from reprise_server.shared.runlogs.models import RunLog
from reprise_server.shared.settings import get_settings, reset_settings_cache
from reprise_server.workers import logcapture, sweeps
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status
from tests.support.inflight import pool_children, prefork_worker


@contextlib.contextmanager
def settings(**values: str) -> Iterator[None]:
    """``REPRISE_<NAME>=value`` for the block (this process's settings), then as before."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in values.items():
            patch.setenv(f"REPRISE_{name.upper()}", value)
        patch.setattr(logcapture, "_flusher", None)
        reset_settings_cache()
        try:
            yield
        finally:
            patch.undo()
            reset_settings_cache()


def lines(run_id: str) -> list[RunLog]:
    with transaction() as session:
        rows = list(session.scalars(select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.seq)))
        session.expunge_all()
        return rows


def messages(run_id: str) -> list[tuple[str, str, str]]:
    return [(line.level, line.logger, line.message) for line in lines(run_id)]


def test_logging_print_stderr_ctx_logger_and_exceptions_are_captured_in_order(
    project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "logs-mixed")
    wait_for_status(run_id, "COMPLETED")
    # Every line is there as soon as the run is final: written before its outcome.
    assert messages(run_id) == [
        ("DEBUG", "logs.app", "debug detail"),
        ("INFO", "logs.app", "starting"),
        ("WARNING", "logs.db", "slow query took 1500ms"),
        ("INFO", "stdout", "printed to stdout"),
        ("INFO", "stdout", "no newline yet ...now"),
        ("WARNING", "stderr", "to stderr"),
        ("INFO", "reprise.task.logs-mixed", "from ctx.logger"),
        ("ERROR", "logs.app", "caught it"),
        ("CRITICAL", "logs.app", "the end"),
    ]
    rows = lines(run_id)
    starting = rows[1]
    assert starting.attributes is not None
    assert starting.attributes["order"] == 42
    assert starting.attributes["items"] == ["a", "b"]
    assert starting.attributes["when"].startswith("<module 'time'")
    assert starting.attempt_number == 1
    assert starting.environment_id == project.environment_ids["dev"]
    caught = rows[7]
    assert caught.exception is not None
    assert "Traceback (most recent call last)" in caught.exception
    assert "ValueError: boom in the task" in caught.exception
    assert all(row.logged_at is not None for row in rows)


def test_lines_are_tagged_with_their_attempt_and_a_raised_error_stays_in_the_run_error(
    project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "logs-fail-once")
    run = wait_for_status(run_id, "COMPLETED")
    assert [(line.attempt_number, line.message) for line in lines(run_id)] == [
        (1, "attempt 1 starts"), (2, "attempt 2 starts"),
    ]
    assert run.attempt_count == 2


def test_an_async_task_and_the_threads_a_task_starts_are_captured(
    project: ProjectKeys, celery_worker: Any
) -> None:
    async_run = triggers.in_db(project, "logs-async")
    thread_run = triggers.in_db(project, "logs-thread")
    wait_for_status(async_run, "COMPLETED")
    wait_for_status(thread_run, "COMPLETED")
    assert sorted(m for _, _, m in messages(async_run)) == sorted([
        "async before await", "async child 1", "async child 2", "from to_thread", "async print",
    ])
    assert sorted(m for _, _, m in messages(thread_run)) == sorted([
        "from my thread", "thread print", "pool item 0", "pool item 1", "pool item 2",
    ])


def test_lines_past_the_cap_are_dropped_after_one_truncated_marker(project: ProjectKeys) -> None:
    from reprise.registry import REGISTRY
    from reprise_server.workers import execution

    with settings(run_log_max_lines="50", run_log_flush_lines="7"):
        run_id = triggers.in_db(project, "logs-many", payload={"count": 120}, publish=False)
        outcome = execution.execute_run(run_id, REGISTRY, "worker-a", "20261122.1")
    assert outcome.status == "COMPLETED"
    rows = lines(run_id)
    assert len(rows) == 51
    assert [r.message for r in rows[:50]] == [f"line {n}" for n in range(50)]
    assert rows[50].logger == "reprise"
    assert rows[50].level == "WARNING"
    assert "truncated" in rows[50].message
    assert rows[50].attributes == {"truncated": True, "maxLines": 50}


@pytest.mark.slow
def test_a_worker_process_drops_lines_past_the_cap_after_one_truncated_marker(
    project: ProjectKeys, own_queues: str
) -> None:
    """The cap as a deployment sets it: a ``reprise worker`` process with its environment's
    settings, its own flusher thread and its own count of the run's lines."""
    run_id = triggers.in_db(project, "logs-many", payload={"count": 120})
    with prefork_worker(own_queues, 1, REPRISE_RUN_LOG_MAX_LINES="50",
                        REPRISE_RUN_LOG_FLUSH_LINES="7") as worker:
        try:
            wait_for_status(run_id, "COMPLETED", timeout=30)
        except AssertionError:
            raise AssertionError(worker.log(200)) from None
    rows = lines(run_id)
    assert len(rows) == 51
    assert [r.message for r in rows[:50]] == [f"line {n}" for n in range(50)]
    assert (rows[50].logger, rows[50].level) == ("reprise", "WARNING")
    assert "truncated" in rows[50].message
    assert rows[50].attributes == {"truncated": True, "maxLines": 50}
    assert {r.attempt_number for r in rows} == {1}


def test_capture_off_records_nothing(project: ProjectKeys) -> None:
    from reprise.registry import REGISTRY
    from reprise_server.workers import execution

    with settings(run_log_capture="false"):
        run_id = triggers.in_db(project, "logs-mixed", publish=False)
        assert execution.execute_run(run_id, REGISTRY, "worker-a", "20261122.1").status == "COMPLETED"
    assert lines(run_id) == []


def test_the_retention_sweep_deletes_old_lines_in_batches(
    project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "logs-many", payload={"count": 30})
    wait_for_status(run_id, "COMPLETED")
    assert len(lines(run_id)) == 30
    # 25 lines become 40 days old; the 5 newest stay.
    with transaction() as session:
        session.execute(
            text(
                "UPDATE run_logs SET logged_at = :old WHERE seq IN ("
                "SELECT seq FROM run_logs WHERE run_id = :run ORDER BY seq LIMIT 25)"
            ),
            {"old": db_now(session) - timedelta(days=40), "run": run_id},
        )
    with settings(run_log_sweep_batch_size="10"):
        assert get_settings().run_log_retention_days == 30
        counts = sweeps.delete_expired_run_logs()
    assert counts == {"deleted": 25}
    assert [r.message for r in lines(run_id)] == [f"line {n}" for n in range(25, 30)]
    assert sweeps.delete_expired_run_logs() == {"deleted": 0}


def test_retention_goes_in_flush_order_and_a_line_stamped_late_holds_back_those_after_it(
    project: ProjectKeys, celery_worker: Any
) -> None:
    run_id = triggers.in_db(project, "logs-many", payload={"count": 30})
    wait_for_status(run_id, "COMPLETED")

    def age(positions: range) -> None:  # 40 days old, by the worker's clock
        with transaction() as session:
            session.execute(
                text("UPDATE run_logs SET logged_at = :old WHERE seq IN (SELECT seq FROM "
                     "run_logs WHERE run_id = :run ORDER BY seq OFFSET :skip LIMIT :n)"),
                {"old": db_now(session) - timedelta(days=40), "run": run_id,
                 "skip": positions.start, "n": len(positions)},
            )

    age(range(10))
    age(range(11, 20))  # line 10 is newer than those flushed after it
    assert sweeps.delete_expired_run_logs() == {"deleted": 10}
    assert [r.message for r in lines(run_id)][:2] == ["line 10", "line 11"]
    age(range(1))  # line 10, first now
    assert sweeps.delete_expired_run_logs() == {"deleted": 10}
    assert [r.message for r in lines(run_id)] == [f"line {n}" for n in range(20, 30)]


@pytest.mark.slow
def test_a_worker_killed_mid_run_keeps_every_batch_it_flushed(
    project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    path = tmp_path / "release"
    run_id = triggers.in_db(project, "logs-then-wait", payload={"count": 5, "path": str(path)})
    with prefork_worker(own_queues, 1) as worker:
        # The lines are flushed (200 ms) while the task waits: seen in the database...
        try:
            wait_for(lambda: len(lines(run_id)) == 5, timeout=30, what="the flushed lines")
        except AssertionError:
            raise AssertionError(worker.log(200)) from None
        # ...then the process executing the run dies without any chance to clean up.
        [child] = pool_children(worker)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # The worker's own log output is unchanged: its lines still reach its output.
        assert "worker registered version" in worker.log(400)
    assert [m for _, _, m in messages(run_id)] == [f"before the wait {n}" for n in range(5)]
    assert {line.attempt_number for line in lines(run_id)} == {1}


@pytest.mark.slow
def test_a_prefork_worker_captures_prints_once_and_still_logs_its_own_lines(
    project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    run_id = triggers.in_db(project, "logs-mixed")
    with prefork_worker(own_queues, 1) as worker:
        wait_for_status(run_id, "COMPLETED", timeout=30)
        wait_for(lambda: f"run {run_id} -> COMPLETED" in worker.log(400), what="the worker's line")
        log = worker.log(400)
    # What the task logged still reaches the worker's output as before (its prints too,
    # through the worker's stdout, buffered)...
    assert "WARNING logs.db: slow query took 1500ms" in log
    assert "ERROR logs.app: caught it" in log
    # ...and each line is in the run's log once (Celery's stdout redirect is not a copy).
    assert [m for _, logger, m in messages(run_id) if logger == "stdout"] == [
        "printed to stdout", "no newline yet ...now",
    ]
    assert len(messages(run_id)) == 9
