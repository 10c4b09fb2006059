"""Typed inputs of run operations, validated at the edge (the API and the SDK share them)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_TAGS = 10


def _tags(value: Any) -> Any:
    if value is None:
        return None
    tags = [value] if isinstance(value, str) else value
    if not isinstance(tags, list):
        raise ValueError("tags must be a string or a list of strings")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"a run can have at most {MAX_TAGS} tags, got {len(tags)}")
    for tag in tags:
        if not isinstance(tag, str) or not 1 <= len(tag) <= 128:
            raise ValueError("each tag must be a string of 1 to 128 characters")
    return tags


# A run's tags as a trigger or a replay gives them: one string or a list, at most 10 of
# 1 to 128 characters each.
Tags = Annotated[list[str] | str | None, BeforeValidator(_tags)]


class IdempotencyKeyOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str | list[str] | None = None
    scope: str | None = None

    @staticmethod
    def user_key(hashed: str | None, options: IdempotencyKeyOptions | None) -> str | None:
        """The key as the user gave it (the SDK sends its hash and the key in the options)."""
        if options and options.key:
            return "-".join(options.key) if isinstance(options.key, list) else options.key
        return hashed


class TriggerOptions(BaseModel):
    """``options`` of a trigger request, as the official SDK sends them (§4.1)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    payload_type: str | None = Field(default=None, alias="payloadType")
    payload_size: int | None = Field(default=None, alias="payloadSize")
    idempotency_key: str | None = Field(default=None, alias="idempotencyKey", max_length=2048)
    idempotency_key_options: IdempotencyKeyOptions | None = Field(
        default=None, alias="idempotencyKeyOptions"
    )
    idempotency_key_ttl: str | None = Field(default=None, alias="idempotencyKeyTTL")
    delay: str | None = None
    ttl: str | int | None = None
    tags: Tags = None
    metadata: dict[str, Any] | None = None
    max_attempts: int | None = Field(default=None, alias="maxAttempts", ge=1, le=100)
    max_duration: int | None = Field(default=None, alias="maxDuration", ge=1, le=7 * 86400)
    queue: str | dict[str, Any] | None = None
    concurrency_key: str | None = Field(default=None, alias="concurrencyKey", max_length=256)
    priority: int | None = Field(default=None, ge=0, le=30 * 86400)
    test: bool | None = None
    machine: str | dict[str, Any] | None = None
    lock_to_version: str | None = Field(default=None, alias="lockToVersion")
    parent_run_id: str | None = Field(default=None, alias="parentRunId")

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        # The SDK serialises a Date as an ISO string already; accept epoch-free numbers as seconds.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{int(value)}s"
        raise ValueError("delay must be a duration such as '1h30m' or an ISO-8601 date")

    @property
    def tag_list(self) -> list[str]:
        if self.tags is None:
            return []
        return sorted(set([self.tags] if isinstance(self.tags, str) else self.tags))

    @property
    def queue_name(self) -> str | None:
        if isinstance(self.queue, dict):
            name = self.queue.get("name")
            return str(name) if name else None
        return self.queue

    @property
    def machine_name(self) -> str | None:
        if isinstance(self.machine, dict):
            preset = self.machine.get("preset")
            return str(preset) if preset else None
        return self.machine

    @property
    def user_idempotency_key(self) -> str | None:
        return IdempotencyKeyOptions.user_key(self.idempotency_key, self.idempotency_key_options)


class TriggerRequest(BaseModel):
    """The trigger body: ``{payload, options}`` (``context`` too, which the official SDK
    may send and Reprise does not use). Anything else at the top level is refused rather
    than silently dropped: a delay there would otherwise run the task at once, and a
    payload without its wrapper would run it with no payload."""

    model_config = ConfigDict(extra="ignore")
    payload: Any = None
    options: TriggerOptions = Field(default_factory=TriggerOptions)
    context: Any = None

    @model_validator(mode="before")
    @classmethod
    def _no_stray_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            option_names = {f.alias or name for name, f in TriggerOptions.model_fields.items()}
            for key in data:
                if key in ("payload", "options", "context"):
                    continue
                where = (
                    "options go under 'options'" if key in option_names
                    else "the task's input goes under 'payload'"
                )
                raise ValueError(f"unknown top-level field {key!r}: {where}")
        return data
