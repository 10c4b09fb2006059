"""``@task(cron=…)``: each registering worker version keeps one declarative schedule per
environment; a version that drops it deactivates it, one that brings it back resumes it;
the API refuses to change what the code owns."""

from __future__ import annotations

from typing import Any

import pytest

from reprise.registry import Registry, TaskDefinition, task
from reprise_server.shared.db import transaction
from reprise_server.shared.errors import BadRequest
from reprise_server.shared.schedules import repository
from reprise_server.shared.schedules.models import ScheduleType
from reprise_server.shared.schedules.service import delete_schedule, set_active
from reprise_server.workers.runtime import register_version
from tests.support.fixtures import ProjectKeys
from tests.support.schedules import Scheduler, fire


def _echo(payload: Any, ctx: Any) -> Any:
    return payload


def registry(**crons: dict[str, Any]) -> Registry:
    """A worker's catalogue: test-echo (with the given cron options) and hello-world."""
    found = Registry()
    found.add(TaskDefinition(id="test-echo", fn=_echo, **crons.get("test-echo", {})))
    found.add(TaskDefinition(id="hello-world", fn=_echo))
    return found


def declarative(project: ProjectKeys, env: str) -> list[Any]:
    with transaction() as session:
        rows = repository.declarative_of(session, project.environment_ids[env])
        for row in rows:
            session.expunge(row)
        return rows


def test_a_version_with_cron_registers_a_schedule_per_environment(
    project: ProjectKeys, scheduler: Scheduler
) -> None:
    cron = {"test-echo": {"cron": "0 * * * *", "timezone": "Europe/Paris"}}
    register_version(registry(**cron), "v-cron-1", ["dev", "staging", "prod"], project.project_id)
    for env in ("dev", "staging", "prod"):
        [schedule] = declarative(project, env)
        assert schedule.type is ScheduleType.DECLARATIVE
        assert (schedule.task_identifier, schedule.cron, schedule.timezone) == (
            "test-echo", "0 * * * *", "Europe/Paris"
        )
        assert schedule.active
        assert schedule.next_tick_at is not None

    # Re-registering the same version (a worker restart) changes nothing.
    [before] = declarative(project, "dev")
    register_version(registry(**cron), "v-cron-1", ["dev", "staging", "prod"], project.project_id)
    [after] = declarative(project, "dev")
    assert (after.id, after.next_tick_at) == (before.id, before.next_tick_at)

    # It ticks like any schedule.
    scheduler.make_due(after.id)
    assert fire() == 1
    [(_, _, payload)] = scheduler.runs(after.id)
    assert payload["type"] == "DECLARATIVE"


def test_a_version_without_the_cron_deactivates_it_and_a_later_one_resumes_it(
    project: ProjectKeys, scheduler: Scheduler
) -> None:
    envs = ["dev"]
    register_version(registry(**{"test-echo": {"cron": "*/5 * * * *"}}), "v1", envs,
                     project.project_id)
    [schedule] = declarative(project, "dev")
    register_version(registry(), "v2", envs, project.project_id)
    [dropped] = declarative(project, "dev")
    assert (dropped.id, dropped.active, dropped.next_tick_at) == (schedule.id, False, None)
    scheduler.make_due(schedule.id)  # even with a past tick set, inactive is not due
    assert fire() == 0

    register_version(registry(**{"test-echo": {"cron": "0 0 * * *", "timezone": "Asia/Tokyo"}}),
                     "v3", envs, project.project_id)
    [back] = declarative(project, "dev")
    assert back.id == schedule.id
    assert (back.active, back.cron, back.timezone) == (True, "0 0 * * *", "Asia/Tokyo")


def test_cron_environments_limits_where_it_ticks(project: ProjectKeys, scheduler: Scheduler) -> None:
    cron = {"test-echo": {"cron": "0 * * * *", "cron_environments": ["prod"]}}
    register_version(registry(**cron), "v1", ["dev", "prod"], project.project_id)
    assert declarative(project, "dev") == []
    assert len(declarative(project, "prod")) == 1


def test_a_bad_declared_cron_fails_the_registration_naming_the_task(
    project: ProjectKeys, scheduler: Scheduler
) -> None:
    with pytest.raises(BadRequest, match="task 'test-echo': Invalid cron expression '0 25 \\* \\* \\*'"):
        register_version(registry(**{"test-echo": {"cron": "0 25 * * *"}}), "v-bad", ["dev"],
                         project.project_id)
    assert declarative(project, "dev") == []


def test_the_api_cannot_change_a_declarative_schedule(
    project: ProjectKeys, scheduler: Scheduler
) -> None:
    register_version(registry(**{"test-echo": {"cron": "0 * * * *"}}), "v1", ["dev"],
                     project.project_id)
    [schedule] = declarative(project, "dev")
    with transaction() as session, pytest.raises(BadRequest, match="Cannot deactivate a declarative"):
        set_active(session, scheduler.auth, schedule.id, False)
    with transaction() as session, pytest.raises(BadRequest, match="Cannot delete a declarative"):
        delete_schedule(session, scheduler.auth, schedule.id)


def test_the_decorator_checks_what_it_can_without_the_server() -> None:
    with pytest.raises(ValueError, match="timezone= needs cron="):
        task(id="t-1", timezone="UTC")
    with pytest.raises(ValueError, match="cron_environments must name some of dev, staging, prod"):
        task(id="t-2", cron="0 * * * *", cron_environments=["production"])
    definition = task(id="t-3", cron="0 * * * *", timezone="UTC")(_echo)
    assert definition.catalogue_entry()["cron"] == "0 * * * *"
