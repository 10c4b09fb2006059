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
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from reprise.models import Schedule

if TYPE_CHECKING:
    from reprise.client import Client


def _path(schedule_id: str, suffix: str = "") -> str:
    if not schedule_id:
        raise ValueError("a schedule id is required")
    return f"/api/v1/schedules/{quote(schedule_id, safe='')}{suffix}"


def _body(
    task: str, cron: str, timezone: str | None, external_id: str | None, **extra: Any
) -> dict[str, Any]:
    body = {"task": task, "cron": cron, "timezone": timezone, "externalId": external_id, **extra}
    return {k: v for k, v in body.items() if v is not None}


class Schedules:
    def __init__(self, client: Callable[[], Client]) -> None:
        self._client = client

    def _schedule(self, method: str, path: str, body: dict[str, Any] | None = None) -> Schedule:
        data = self._client().transport.request_json(method, path, json_body=body)
        return Schedule.model_validate(data)

    def create(
        self,
        *,
        task: str,
        cron: str,
        timezone: str | None = None,
        external_id: str | None = None,
        deduplication_key: str | None = None,
    ) -> Schedule:
        """A new schedule; with a ``deduplication_key`` already used in the environment,
        that schedule updated instead."""
        body = _body(task, cron, timezone, external_id, deduplicationKey=deduplication_key)
        return self._schedule("POST", "/api/v1/schedules", body)

    def retrieve(self, schedule_id: str) -> Schedule:
        return self._schedule("GET", _path(schedule_id))

    def update(
        self,
        schedule_id: str,
        *,
        task: str,
        cron: str,
        timezone: str | None = None,
        external_id: str | None = None,
    ) -> Schedule:
        """Replace the schedule (an omitted ``timezone`` is UTC, ``external_id`` cleared)."""
        return self._schedule("PUT", _path(schedule_id), _body(task, cron, timezone, external_id))

    def activate(self, schedule_id: str) -> Schedule:
        return self._schedule("POST", _path(schedule_id, "/activate"))

    def deactivate(self, schedule_id: str) -> Schedule:
        return self._schedule("POST", _path(schedule_id, "/deactivate"))

    def delete(self, schedule_id: str) -> str:
        return str(self._client().transport.request_json("DELETE", _path(schedule_id))["id"])

    def list(self, *, per_page: int = 20) -> Iterator[Schedule]:
        """Every schedule of the key's environment, newest first, a page at a time."""
        page = 1
        while True:
            data = self._client().transport.request_json(
                "GET", "/api/v1/schedules", params={"page": str(page), "perPage": str(per_page)}
            )
            for item in data.get("data", []):
                yield Schedule.model_validate(item)
            pagination = data.get("pagination") or {}
            if page >= int(pagination.get("totalPages", 1)):
                return
            page += 1

    def timezones(self, *, exclude_utc: bool = False) -> builtins.list[str]:
        params = {"excludeUtc": "true"} if exclude_utc else None
        data = self._client().transport.request_json("GET", "/api/v1/timezones", params=params)
        return [str(zone) for zone in data["timezones"]]
