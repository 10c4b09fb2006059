"""Create is idempotent on the deduplication key even when two creates race: the second
waits for the first's row, then updates that schedule instead of adding another."""

from __future__ import annotations

import threading

from reprise_server.shared.db import transaction
from reprise_server.shared.schedules.schemas import CreateScheduleRequest
from reprise_server.shared.schedules.service import create_schedule
from tests.support.fixtures import lock_waiters, wait_for
from tests.support.schedules import Scheduler
from tests.support.timers import InThread, sql


def test_two_creates_with_one_key_make_one_schedule(scheduler: Scheduler) -> None:
    body = {"task": "test-echo", "cron": "0 * * * *", "deduplicationKey": "race"}
    inserted, release = threading.Event(), threading.Event()

    def first_create() -> str:
        with transaction() as session:
            request = CreateScheduleRequest.model_validate(body)
            created = create_schedule(session, scheduler.auth, request)
            inserted.set()
            assert release.wait(15)
            return created.id

    first = InThread(first_create)
    assert inserted.wait(15)
    second = InThread(lambda: scheduler.create(**{**body, "cron": "30 * * * *"}))
    wait_for(lambda: lock_waiters() >= 1, what="the second create to wait on the first's row")
    release.set()
    first_id = first.result()
    assert second.result() == first_id
    [(count, cron)] = sql(
        "SELECT count(*), max(cron) FROM schedules WHERE deduplication_key = 'race'"
    ).all()
    assert (count, cron) == (1, "30 * * * *")  # the later create's values won
