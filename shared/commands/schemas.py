"""Typed inputs of commands, validated at the edge (API and SDK share them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from reprise_server.shared.runs.schemas import QueueName, Tags


class ReplayRequest(BaseModel):
    """The optional body of ``POST /api/v1/runs/{runId}/replay``: overrides of the original,
    with every field the official SDK's ``ReplayRunRequestBody`` has (a strict object there:
    an unknown field is refused here too, with 400).

    An absent field keeps the original's value; ``payload`` is replaced even by ``null``
    when the key is present (see :attr:`overrides_payload`).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    payload: Any = None
    payload_type: str | None = Field(default=None, alias="payloadType")
    environment: str | None = Field(default=None, min_length=1, max_length=64)
    tags: Tags = None
    metadata: dict[str, Any] | None = None
    delay: str | int | float | None = None
    # Strict where the SDK's zod schema is: "3" is not a number.
    ttl: StrictStr | StrictInt | None = None
    max_attempts: int | None = Field(default=None, alias="maxAttempts", ge=1, le=100, strict=True)
    max_duration: int | None = Field(
        default=None, alias="maxDuration", ge=1, le=7 * 86400, strict=True
    )
    priority: int | None = Field(default=None, ge=0, le=30 * 86400, strict=True)
    queue: QueueName | None = None
    concurrency_key: str | None = Field(default=None, alias="concurrencyKey", max_length=256)
    machine: str | dict[str, Any] | None = None
    version: str | None = Field(default=None, min_length=1, max_length=100)
    region: str | None = None
    idempotency_key: str | None = Field(default=None, alias="idempotencyKey", max_length=2048)
    idempotency_key_ttl: str | None = Field(default=None, alias="idempotencyKeyTTL")
    # Reprise's extension: execute from this step of the original's durable record (its
    # position, or its name; ``name#2`` for its second call), reusing what came before.
    from_step: str | None = Field(default=None, alias="fromStep", min_length=1, max_length=260)
    # Reprise's extension (Strait's ``from_checkpoint``): the new run's payload is this
    # checkpoint's state; the task reads where it resumes in ``ctx.run``.
    from_checkpoint: int | None = Field(default=None, alias="fromCheckpoint", ge=1, strict=True)

    @field_validator("delay", "ttl", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a duration string or a number of seconds")
        return value

    @field_validator("region")
    @classmethod
    def _one_region(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(f"region is not supported: Reprise runs every task in one region "
                             f"(got {value!r})")
        return value

    @property
    def overrides_payload(self) -> bool:
        return "payload" in self.model_fields_set


class RescheduleRequest(BaseModel):
    """The body of ``POST /api/v1/runs/{runId}/reschedule``.

    ``delay`` must be a string: the SDK sends a ``Date`` as its ISO string, and a JSON
    number is refused rather than guessed at (seconds? epoch milliseconds?).
    """

    model_config = ConfigDict(extra="ignore")

    delay: StrictStr = Field(
        description="A duration such as 1h30m (from now) or an ISO-8601 date-time in the future"
    )
