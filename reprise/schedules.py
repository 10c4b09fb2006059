"""``reprise.schedules``: cron schedules over the API, as ``schedules.*`` of Trigger.dev's SDK.

::

    schedule = reprise.schedules.create(
        task="send-digest", cron="0 9 * * 1-5", timezone="Europe/London",
        external_id="user_1", deduplication_key="digest-user_1",
    )
    for schedule in reprise.schedules.list():
        print(schedule.id, schedule.generator.expression, schedule.next_run)
    reprise.schedules.deactivate(schedule.id)
"""

from __future__ import annotations

import builtins
from typing import Any
from urllib.parse import quote

from reprise._resource import Listing, M, Operation, Resource
from reprise._sansio import Feed, Op, call_json, offset_pages
from reprise.models import Schedule


def _path(schedule_id: str, suffix: str = "") -> str:
    if not schedule_id:
        raise ValueError("a schedule id is required")
    return f"/api/v1/schedules/{quote(schedule_id, safe='')}{suffix}"


def _body(
    task: str, cron: str, timezone: str | None, external_id: str | None, **extra: Any
) -> dict[str, Any]:
    body = {"task": task, "cron": cron, "timezone": timezone, "externalId": external_id, **extra}
    return {k: v for k, v in body.items() if v is not None}


def _schedule(method: str, path: str, body: dict[str, Any] | None = None) -> Op[Schedule]:
    return Schedule.model_validate((yield from call_json(method, path, json_body=body)))


class Schedules(Resource[M]):
    @Operation
    def create(
        self,
        *,
        task: str,
        cron: str,
        timezone: str | None = None,
        external_id: str | None = None,
        deduplication_key: str | None = None,
    ) -> Op[Schedule]:
        """A new schedule; with a ``deduplication_key`` already used in the environment,
        that schedule updated instead."""
        body = _body(task, cron, timezone, external_id, deduplicationKey=deduplication_key)
        return (yield from _schedule("POST", "/api/v1/schedules", body))

    @Operation
    def retrieve(self, schedule_id: str) -> Op[Schedule]:
        return (yield from _schedule("GET", _path(schedule_id)))

    @Operation
    def update(
        self,
        schedule_id: str,
        *,
        task: str,
        cron: str,
        timezone: str | None = None,
        external_id: str | None = None,
    ) -> Op[Schedule]:
        """Replace the schedule (an omitted ``timezone`` is UTC, ``external_id`` cleared)."""
        body = _body(task, cron, timezone, external_id)
        return (yield from _schedule("PUT", _path(schedule_id), body))

    @Operation
    def activate(self, schedule_id: str) -> Op[Schedule]:
        return (yield from _schedule("POST", _path(schedule_id, "/activate")))

    @Operation
    def deactivate(self, schedule_id: str) -> Op[Schedule]:
        return (yield from _schedule("POST", _path(schedule_id, "/deactivate")))

    @Operation
    def delete(self, schedule_id: str) -> Op[str]:
        return str((yield from call_json("DELETE", _path(schedule_id)))["id"])

    @Listing
    def list(self, *, per_page: int = 20) -> Feed[Schedule]:
        """Every schedule of the key's environment, newest first, a page at a time."""
        return offset_pages("/api/v1/schedules", per_page, Schedule.model_validate)

    @Operation
    def timezones(self, *, exclude_utc: bool = False) -> Op[builtins.list[str]]:
        params = {"excludeUtc": "true"} if exclude_utc else None
        data = yield from call_json("GET", "/api/v1/timezones", params=params)
        return [str(zone) for zone in data["timezones"]]
