"""The bodies of ``POST /api/v1/schedules`` and ``PUT /api/v1/schedules/{id}``, in the
shapes of ``@trigger.dev/core``'s ``CreateScheduleOptions`` / ``UpdateScheduleOptions``.

Unknown fields are refused (nothing sent is silently ignored), and so is ``window``
(Trigger.dev's stable per-occurrence delay), which Reprise does not implement.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from reprise_server.shared.payloads import reject_unstorable


class UpdateScheduleRequest(BaseModel):
    """A whole schedule (``PUT`` replaces it: an absent ``timezone`` is UTC again, an
    absent ``externalId`` clears it, as in Trigger.dev)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task: str = Field(min_length=1, max_length=128)
    cron: str = Field(max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    external_id: str | None = Field(default=None, alias="externalId", max_length=1024)
    window: Any = None

    @field_validator("window")
    @classmethod
    def _no_window(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("schedule windows are not supported by Reprise; remove window")
        return value

    @field_validator("task", "cron", "timezone", "external_id")
    @classmethod
    def _storable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            field = cls.model_fields[info.field_name or ""]
            reject_unstorable(value, field.alias or info.field_name or "the schedule")
        return value


class CreateScheduleRequest(UpdateScheduleRequest):
    """A new schedule; a ``deduplicationKey`` already used in the environment updates that
    schedule instead (create is idempotent on it). Without one (or with ``""``, as
    Trigger.dev reads it), every create is new."""

    deduplication_key: str | None = Field(default=None, alias="deduplicationKey", max_length=256)

    @field_validator("deduplication_key")
    @classmethod
    def _storable_key(cls, value: str | None) -> str | None:
        if value is not None:
            reject_unstorable(value, "deduplicationKey")
        return value or None
