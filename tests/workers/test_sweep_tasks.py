"""Beat sweeps that can be trusted: a duplicate steps aside, a stale backlog is discarded,
and beat schedules every time sweep with an expiry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from reprise_server.shared import broker
from reprise_server.shared.db import transaction
from reprise_server.shared.settings import get_settings
from reprise_server.shared.sweeps.service import claim_sweep
from reprise_server.workers import sweeps as sweep_tasks
from reprise_server.workers.app import app
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for
from tests.support.timers import InThread, backdate, db_clock


@pytest.fixture
def overdue_and_stale(project: ProjectKeys) -> tuple[str, str]:
    """A DELAYED run past its time and a QUEUED run past its TTL, no message for either."""
    delayed = triggers.in_db(project, delay="1h", publish=False)
    backdate(delayed, "delayed_until")
    stale = triggers.in_db(project, ttl="10m", publish=False)
    backdate(stale, "ttl_expires_at")
    return delayed, stale


@pytest.mark.parametrize(
    ("sweep", "name"),
    [
        (sweep_tasks.promote_due_runs, broker.PROMOTE_DUE_RUNS),
        (sweep_tasks.expire_stale_runs, broker.EXPIRE_STALE_RUNS),
    ],
)
def test_a_duplicate_sweep_returns_at_once_while_the_same_sweep_runs(
    overdue_and_stale: tuple[str, str], sweep: Any, name: str
) -> None:
    holding = threading.Event()
    release = threading.Event()

    def hold_the_sweep_lock() -> None:
        with transaction() as session:
            assert claim_sweep(session, name)
            holding.set()
            assert release.wait(15)

    holder = InThread(hold_the_sweep_lock)
    assert holding.wait(15)
    assert sweep() == {"skipped": 1}
    assert [run_row(r).status for r in overdue_and_stale] == ["DELAYED", "QUEUED"]
    release.set()
    holder.result()
    done = sweep()
    assert "skipped" not in done
    assert sum(done.values()) >= 1


def test_different_sweeps_do_not_block_each_other(overdue_and_stale: tuple[str, str]) -> None:
    with transaction() as session:
        assert claim_sweep(session, broker.PROMOTE_DUE_RUNS)
        assert InThread(sweep_tasks.expire_stale_runs).result() == {"expired": 1}


@pytest.fixture
def revoked() -> Iterator[list[tuple[str, bool]]]:
    from celery.signals import task_revoked

    seen: list[tuple[str, bool]] = []

    def record(request: Any = None, expired: bool = False, **_: Any) -> None:
        seen.append((request.id, expired))

    task_revoked.connect(record, weak=False)
    yield seen
    task_revoked.disconnect(record)


def test_a_sweep_message_that_waited_past_its_expiry_is_discarded_by_the_worker(
    overdue_and_stale: tuple[str, str], revoked: list[tuple[str, bool]], celery_worker: Any
) -> None:
    delayed, _ = overdue_and_stale
    options = app.conf.beat_schedule["promote-due-runs"]["options"]
    # As if beat had sent it more than `expires` ago and no worker had been there to take it.
    late = app.send_task(broker.PROMOTE_DUE_RUNS, expires=db_clock() - timedelta(seconds=1))
    wait_for(lambda: (late.id, True) in revoked, what="the worker to discard the late sweep")
    assert run_row(delayed).status == "DELAYED"
    app.send_task(broker.PROMOTE_DUE_RUNS, **options)  # a fresh one runs
    wait_for(lambda: run_row(delayed).queued_at is not None, what="the fresh sweep to promote")


def test_beat_schedules_each_time_sweep_every_interval_with_an_expiry() -> None:
    schedule = app.conf.beat_schedule
    interval = get_settings().sweep_interval_seconds
    by_task = {entry["task"]: entry for entry in schedule.values()}
    # Every sweep by name: one dropped from beat fails here, and a new one must be added.
    every_sweep = (
        broker.PROMOTE_DUE_RUNS, broker.EXPIRE_STALE_RUNS, broker.RELAY_PENDING_COMMANDS,
        broker.RECOVER_STALE_RUNS, broker.FIRE_DUE_SCHEDULES, broker.RELEASE_WAITING_RUNS,
        broker.ADMIT_WAITING_RUNS, broker.RESUME_PARKED_RUNS, broker.DELETE_EXPIRED_RUN_LOGS,
        broker.COMPLETE_DUE_WAITPOINTS,
    )
    assert sorted(by_task) == sorted(every_sweep)
    assert len(schedule) == len(every_sweep)  # each scheduled once
    for task in every_sweep:
        entry = by_task[task]
        assert entry["schedule"] == interval
        assert 0 < entry["options"]["expires"] < get_settings().timer_horizon_seconds
        assert task in app.tasks
        assert app.amqp.router.route({}, task)["queue"].name.endswith(".sweeps")
    assert app.amqp.router.route({}, broker.PROMOTE_RUN)["queue"].name.endswith(".timers")


def test_a_sweep_that_found_nothing_logs_at_debug_one_that_did_something_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Celery's own "received"/"succeeded" lines, through the loggers Celery uses."""
    from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

    trace = logging.getLogger("celery.app.trace")
    strategy = logging.getLogger("celery.worker.strategy")

    def success(name: str, value: str) -> dict[str, str]:
        return {"id": "t1", "name": name, "return_value": value, "runtime": "0.01"}

    with caplog.at_level(logging.INFO):
        strategy.info(LOG_RECEIVED, {"id": "t1", "name": broker.PROMOTE_DUE_RUNS})
        trace.info(LOG_SUCCESS, success(broker.PROMOTE_DUE_RUNS, "{'promoted': 0, 'armed': 0}"))
        trace.info(LOG_SUCCESS, success(broker.EXPIRE_STALE_RUNS, "{'skipped': 1}"))
        trace.info(LOG_SUCCESS, success(broker.EXPIRE_STALE_RUNS, "{'expired': 3}"))
        trace.info(LOG_SUCCESS, success(broker.APPLY_COMMAND, "None"))
    shown = [record.getMessage() for record in caplog.records]
    assert shown == [
        f"Task {broker.EXPIRE_STALE_RUNS}[t1] succeeded in 0.01s: {{'expired': 3}}",
        f"Task {broker.APPLY_COMMAND}[t1] succeeded in 0.01s: None",
    ]
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        trace.info(LOG_SUCCESS, success(broker.PROMOTE_DUE_RUNS, "{'promoted': 0, 'armed': 0}"))
    assert [record.levelname for record in caplog.records] == ["DEBUG"]
