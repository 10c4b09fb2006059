"""Helpers for schedule tests: schedules made through the service, due on demand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.fixtures import ProjectKeys


def _sql(statement: str, **params: Any) -> Any:
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return session.execute(text(statement), params).all()


@pytest.fixture
def clean_schedules() -> Iterator[None]:
    """No schedule of another test fires during this one, nor this one's afterwards (real
    beats in other tests fire every active schedule of the database)."""
    _sql("DELETE FROM schedules RETURNING id")
    yield
    _sql("DELETE FROM schedules RETURNING id")


@dataclass
class Scheduler:
    project: ProjectKeys
    env: str = "dev"

    @property
    def auth(self) -> Any:
        from reprise_server.shared.projects.service import AuthContext

        return AuthContext(self.project.project_id, self.project.environment_ids[self.env], self.env)

    def create(self, cron: str = "0 * * * *", task: str = "test-echo", **fields: Any) -> str:
        """A schedule made through the service (as the API makes it); returns its id."""
        from reprise_server.shared.db import transaction
        from reprise_server.shared.schedules.schemas import CreateScheduleRequest
        from reprise_server.shared.schedules.service import create_schedule

        body = CreateScheduleRequest.model_validate({"task": task, "cron": cron, **fields})
        with transaction() as session:
            return create_schedule(session, self.auth, body).id

    def make_due(self, schedule_id: str, seconds_ago: float = 0.0) -> None:
        """As if time had passed: the schedule's next tick is its latest real tick at
        least ``seconds_ago`` in the past."""
        from datetime import timedelta

        from reprise_server.shared.schedules.cron import Cron
        from tests.support.timers import db_clock

        schedule = self.row(schedule_id)
        cron = Cron.parse(schedule.cron, schedule.timezone)
        tick = cron.latest_at_or_before(db_clock() - timedelta(seconds=seconds_ago))
        _sql("UPDATE schedules SET next_tick_at = :t WHERE id = :id RETURNING id",
             t=tick, id=schedule_id)

    def row(self, schedule_id: str) -> Any:
        from reprise_server.shared.db import transaction
        from reprise_server.shared.schedules import repository

        with transaction() as session:
            schedule = repository.get_schedule(session, None, schedule_id)
            if schedule is not None:
                session.expunge(schedule)
            return schedule

    def runs(self, schedule_id: str) -> list[Any]:
        """``(run id, tick, payload)`` of the schedule's runs, by tick."""
        return _sql(
            "SELECT id, schedule_tick_at, payload FROM runs WHERE schedule_id = :id "
            "ORDER BY schedule_tick_at",
            id=schedule_id,
        )


def fire(publish: bool = False) -> int:
    """One sweep's work (the domain function, without the beat task's advisory lock)."""
    from reprise_server.shared.db import discard_after_commit, transaction
    from reprise_server.shared.schedules.service import fire_due_schedules

    with transaction() as session:
        fired = fire_due_schedules(session)
        if not publish:
            discard_after_commit(session)
        return fired


@pytest.fixture
def scheduler(project: ProjectKeys, clean_schedules: None) -> Scheduler:
    return Scheduler(project)
