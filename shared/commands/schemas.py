"""Typed inputs of commands, validated at the edge (API and SDK share them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from shared.runs.schemas import Tags


class ReplayRequest(BaseModel):
    """The optional body of ``POST /api/v1/runs/{runId}/replay``: overrides of the original.

    An absent field keeps the original's value; ``payload`` is replaced even by ``null``
    when the key is present (see :attr:`overrides_payload`).
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    payload: Any = None
    environment: str | None = Field(default=None, min_length=1, max_length=64)
    tags: Tags = None
    metadata: dict[str, Any] | None = None
    delay: str | int | float | None = None
    ttl: str | int | None = None
    max_attempts: int | None = Field(default=None, alias="maxAttempts", ge=1, le=100)
    priority: int | None = Field(default=None, ge=0, le=30 * 86400)
    queue: str | dict[str, Any] | None = None

    @field_validator("delay", "ttl", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a duration string or a number of seconds")
        return value

    @property
    def overrides_payload(self) -> bool:
        return "payload" in self.model_fields_set

    def overrides(self) -> dict[str, Any]:
        """The trigger options this body overrides, keyed as ``TriggerOptions`` aliases."""
        values: dict[str, Any] = {}
        if self.tags is not None:
            values["tags"] = sorted(set([self.tags] if isinstance(self.tags, str) else self.tags))
        for key, value in (
            ("metadata", self.metadata),
            ("delay", self.delay),
            ("ttl", self.ttl),
            ("maxAttempts", self.max_attempts),
            ("priority", self.priority),
            ("queue", self.queue),
        ):
            if value is not None:
                values[key] = value
        if self.overrides_payload:
            values["payload"] = self.payload
        return values


class RescheduleRequest(BaseModel):
    """The body of ``POST /api/v1/runs/{runId}/reschedule``.

    ``delay`` must be a string: the SDK sends a ``Date`` as its ISO string, and a JSON
    number is refused rather than guessed at (seconds? epoch milliseconds?).
    """

    model_config = ConfigDict(extra="ignore")

    delay: StrictStr = Field(
        description="A duration such as 1h30m (from now) or an ISO-8601 date-time in the future"
    )
