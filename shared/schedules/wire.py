"""Schedules on the wire: ``ScheduleObject`` of ``@trigger.dev/core``, and the run's
``schedule`` (``RunScheduleDetails``). Absent optional fields are omitted, never null."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reprise_server.shared.durations import iso
from reprise_server.shared.schedules.cron import Cron
from reprise_server.shared.schedules.models import Schedule
from reprise_server.shared.schedules.service import SchedulePage, next_runs

ENVIRONMENT_TYPES = {"dev": "DEVELOPMENT", "staging": "STAGING", "prod": "PRODUCTION"}


def _generator(schedule: Schedule) -> dict[str, str]:
    return {
        "type": "CRON",
        "expression": schedule.cron,
        "description": Cron.parse(schedule.cron, schedule.timezone).describe(),
    }


def schedule_to_wire(schedule: Schedule, environment_slug: str, now: datetime) -> dict[str, Any]:
    """The schedule object; ``nextRuns`` (its next five ticks) and ``lastRun`` are Reprise
    extras that the SDK ignores."""
    upcoming = next_runs(schedule, now)
    data: dict[str, Any] = {
        "id": schedule.id,
        "type": str(schedule.type),
        "task": schedule.task_identifier,
        "active": schedule.active,
        "generator": _generator(schedule),
        "timezone": schedule.timezone,
        "environments": [
            {"id": schedule.environment_id, "type": ENVIRONMENT_TYPES.get(environment_slug, "")}
        ],
        "nextRuns": [iso(tick) for tick in upcoming],
        "createdAt": iso(schedule.created_at),
        "updatedAt": iso(schedule.updated_at),
    }
    if schedule.user_provided_deduplication_key:
        data["deduplicationKey"] = schedule.deduplication_key
    if schedule.external_id is not None:
        data["externalId"] = schedule.external_id
    if upcoming:
        data["nextRun"] = iso(upcoming[0])
    if schedule.last_tick_at is not None:
        data["lastRun"] = iso(schedule.last_tick_at)
    return data


def page_to_wire(page: SchedulePage, environment_slug: str, now: datetime) -> dict[str, Any]:
    return {
        "data": [schedule_to_wire(s, environment_slug, now) for s in page.schedules],
        "pagination": {
            "currentPage": page.page,
            "totalPages": page.total_pages,
            "count": page.count,
        },
    }


def run_schedule_to_wire(schedule: Schedule) -> dict[str, Any]:
    """A run's ``schedule``: the schedule whose tick created it."""
    data: dict[str, Any] = {"id": schedule.id, "generator": _generator(schedule)}
    if schedule.external_id is not None:
        data["externalId"] = schedule.external_id
    if schedule.user_provided_deduplication_key:
        data["deduplicationKey"] = schedule.deduplication_key
    return data
