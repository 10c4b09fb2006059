"""Typed inputs of run operations, validated at the edge (the API and the SDK share them)."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
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
    for tag in tags:
        if not isinstance(tag, str) or len(tag) > 128:
            raise ValueError("each tag must be a string of at most 128 characters")
    # Empty tags are accepted and dropped, as Trigger.dev does.
    tags = [tag for tag in tags if tag.strip()]
    if len(tags) > MAX_TAGS:
        raise ValueError(f"a run can have at most {MAX_TAGS} tags, got {len(tags)}")
    return tags


# A run's tags as a trigger or a replay gives them: one string or a list, at most 10 of
# at most 128 characters each (empty ones are dropped).
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


# Trigger.dev's queue names (its sanitizeQueueName keeps only these, at most 128): a name
# outside them is refused rather than rewritten, so a run lands in the queue it names.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_\-/]{1,128}")
QUEUE_NAME_RULE = "a queue name is 1 to 128 letters, digits, _ - or /"


def valid_queue_name(name: Any) -> str:
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise ValueError(f"{QUEUE_NAME_RULE}, got {name!r}")
    return name


def _trigger_queue(value: Any) -> Any:
    """A trigger's ``queue``: a name (curl, the Python SDK) or ``{"name": …}`` (the official
    SDK, with its deprecated ``concurrencyLimit``)."""
    if value is None:
        return None
    if isinstance(value, dict):
        unknown = sorted(str(key) for key in value if key not in ("name", "concurrencyLimit"))
        if unknown:
            raise ValueError(f"unknown queue field {unknown[0]!r} (a queue is {{name}})")
        limit = value.get("concurrencyLimit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValueError("queue.concurrencyLimit must be an integer")
        valid_queue_name(value.get("name"))
        return value
    return valid_queue_name(value)


LIMIT_NAME_RULE = (
    "Concurrency limit names are 1-122 characters using only letters, numbers, underscores "
    "and hyphens"
)
_LIMIT_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,122}$")


def valid_limit_name(name: Any) -> str:
    """A named concurrency limit's name (the SDK's rule; ``task/<id>`` is a task's own)."""
    if not isinstance(name, str) or not _LIMIT_NAME.match(name):
        raise ValueError(f"{LIMIT_NAME_RULE} (got {name!r})")
    return name


def _concurrency_key(value: Any) -> Any:
    """A ``concurrencyKey``: a string, or a number (stored as its string, as the SDK does)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("concurrencyKey must be a string or a number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    key = str(value)
    if not 1 <= len(key) <= 128:
        raise ValueError("concurrencyKey must be 1 to 128 characters")
    return key


LimitName = Annotated[str, BeforeValidator(valid_limit_name)]
ConcurrencyKey = Annotated[str | None, BeforeValidator(_concurrency_key)]

# A queue as a replay names it (a string, as the SDK's ReplayRunRequestBody has it).
QueueName = Annotated[str, BeforeValidator(valid_queue_name)]
# A queue as a trigger names it: a name, or ``{"name": …}``.
TriggerQueue = Annotated[str | dict[str, Any] | None, BeforeValidator(_trigger_queue)]


def queue_name(queue: str | dict[str, Any] | None) -> str | None:
    """A queue as a trigger or a replay names it: its name, or ``{"name": …}``."""
    if isinstance(queue, dict):
        name = queue.get("name")
        return str(name) if name else None
    return queue


def machine_name(machine: str | dict[str, Any] | None) -> str | None:
    """A machine as a trigger or a replay names it: a preset, or ``{"preset": …}``."""
    if isinstance(machine, dict):
        preset = machine.get("preset")
        return str(preset) if preset else None
    return machine


# Options the SDK can send that Reprise cannot honour: refused with 400 naming them rather
# than ignored (the run would otherwise run somewhere, or in a way, it was not asked to).
REFUSED_OPTIONS: dict[str, str] = {
    "region": "Reprise runs every task in one region",
    "debounce": "debounced triggers are not implemented",
    "gates": "queue gates are not implemented",
    "externalDeploymentId": "Reprise versions are worker versions; lock with `version`",
    "resumeParentOnCompletion": "waiting for a child run (triggerAndWait) is not implemented",
    "dependentAttempt": "an engine v1 option (Reprise speaks the v2 engine's API)",
    "parentAttempt": "an engine v1 option (Reprise speaks the v2 engine's API)",
    "dependentBatch": "an engine v1 option (Reprise speaks the v2 engine's API)",
    "parentBatch": "an engine v1 option (Reprise speaks the v2 engine's API)",
    "bulkActionId": "bulk actions set it on the runs they create; a trigger cannot",
}
# The one metadata encoding Reprise stores (the SDK sends metadata as a JSON object).
METADATA_TYPES = (None, "application/json")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# Read from the model once (every trigger and batch item validates its options).
@functools.cache
def _option_keys() -> frozenset[str]:
    fields = TriggerOptions.model_fields
    return frozenset(fields) | {f.alias for f in fields.values() if f.alias}


@functools.cache
def _refused_fields() -> tuple[tuple[str, str, str], ...]:
    """``(option, field, why)`` of each of :data:`REFUSED_OPTIONS`."""
    fields = TriggerOptions.model_fields
    return tuple((name, name if name in fields else _snake(name), why)
                 for name, why in REFUSED_OPTIONS.items())


class TriggerOptions(BaseModel):
    """``options`` of a trigger request, as the official SDK sends them
    (docs/api.md#packets-run-endpoints-and-options)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    payload_type: str | None = Field(default=None, alias="payloadType")
    payload_size: int | None = Field(default=None, alias="payloadSize", ge=0, strict=True)
    idempotency_key: str | None = Field(default=None, alias="idempotencyKey", max_length=2048)
    idempotency_key_options: IdempotencyKeyOptions | None = Field(
        default=None, alias="idempotencyKeyOptions"
    )
    idempotency_key_ttl: str | None = Field(default=None, alias="idempotencyKeyTTL")
    # A duration, an ISO-8601 date, or a number of seconds (fractions kept): read by the
    # trigger's delay policy (shared.runs.service.TRIGGER_DELAY), never rounded here.
    delay: str | int | float | None = None
    # Strict where the SDK's zod schema is: "3" is not a number, "yes" not a boolean.
    ttl: StrictStr | StrictInt | None = None
    tags: Tags = None
    metadata: dict[str, Any] | None = None
    max_attempts: int | None = Field(default=None, alias="maxAttempts", ge=1, le=100, strict=True)
    max_duration: int | None = Field(
        default=None, alias="maxDuration", ge=1, le=7 * 86400, strict=True
    )
    queue: TriggerQueue = None
    concurrency_key: ConcurrencyKey = Field(default=None, alias="concurrencyKey")
    priority: int | None = Field(default=None, ge=0, le=30 * 86400, strict=True)
    test: bool | None = Field(default=None, strict=True)
    machine: str | dict[str, Any] | None = None
    lock_to_version: str | None = Field(default=None, alias="lockToVersion", max_length=100)
    parent_run_id: str | None = Field(default=None, alias="parentRunId")
    # Sent by the SDK, refused when set (REFUSED_OPTIONS).
    region: Any = None
    debounce: Any = None
    gates: Any = None
    # Named concurrency limits replacing the task's for this run (at most two).
    concurrency: list[LimitName] | None = Field(default=None, max_length=2)
    external_deployment_id: Any = Field(default=None, alias="externalDeploymentId")
    resume_parent_on_completion: Any = Field(default=None, alias="resumeParentOnCompletion")
    dependent_attempt: Any = Field(default=None, alias="dependentAttempt")
    parent_attempt: Any = Field(default=None, alias="parentAttempt")
    dependent_batch: Any = Field(default=None, alias="dependentBatch")
    parent_batch: Any = Field(default=None, alias="parentBatch")
    bulk_action_id: Any = Field(default=None, alias="bulkActionId")
    metadata_type: str | None = Field(default=None, alias="metadataType")

    @model_validator(mode="before")
    @classmethod
    def _known_options(cls, data: Any) -> Any:
        # An option Reprise does not know is refused, never dropped: a misspelt `dealy`
        # would otherwise run the task at once.
        if isinstance(data, dict):
            known = _option_keys()
            unknown = sorted(str(key) for key in data if key not in known)
            if unknown:
                raise ValueError(f"unknown option {unknown[0]!r} (not an option of a trigger)")
        return data

    @model_validator(mode="after")
    def _refused_options(self) -> TriggerOptions:
        for name, field, why in _refused_fields():
            value = getattr(self, field)
            if not (value is None or value is False or value == [] or value == ""):
                raise ValueError(f"options.{name} is not supported: {why} (got {value!r})")
        if self.metadata_type not in METADATA_TYPES:
            raise ValueError(
                f"options.metadataType {self.metadata_type!r} is not supported: metadata is "
                "stored as application/json"
            )
        return self

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> Any:
        # The SDK serialises a Date as an ISO string already; a number is seconds from now.
        if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
            return value
        raise ValueError("delay must be a duration such as '1h30m' or an ISO-8601 date")

    @property
    def tag_list(self) -> list[str]:
        if self.tags is None:
            return []
        return sorted(set([self.tags] if isinstance(self.tags, str) else self.tags))

    @property
    def queue_name(self) -> str | None:
        return queue_name(self.queue)

    @property
    def machine_name(self) -> str | None:
        return machine_name(self.machine)

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


class _Operation(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UpdateOperation(_Operation):
    type: Literal["update"]
    value: dict[str, Any]


class KeyOperation(_Operation):
    """``set``, ``append``, ``remove`` (with a value), ``delete`` (without)."""

    type: Literal["set", "append", "remove"]
    key: str = Field(min_length=1, max_length=1024)
    value: Any = None


class DeleteOperation(_Operation):
    type: Literal["delete"]
    key: str = Field(min_length=1, max_length=1024)


class IncrementOperation(_Operation):
    type: Literal["increment"]
    key: str = Field(min_length=1, max_length=1024)
    value: int | float


MetadataOperation = Annotated[
    UpdateOperation | KeyOperation | DeleteOperation | IncrementOperation,
    Field(discriminator="type"),
]


class UpdateMetadataRequest(BaseModel):
    """``PUT /api/v1/runs/{id}/metadata`` (the SDK's ``FlushedRunMetadata``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    metadata: dict[str, Any] | None = None
    operations: list[MetadataOperation] | None = None
    parent_operations: list[MetadataOperation] | None = Field(None, alias="parentOperations")
    root_operations: list[MetadataOperation] | None = Field(None, alias="rootOperations")


class AddTagsRequest(BaseModel):
    """``POST /api/v1/runs/{id}/tags``."""

    model_config = ConfigDict(extra="forbid")
    tags: Annotated[list[str] | str, BeforeValidator(_tags)]


class ResetIdempotencyKeyRequest(BaseModel):
    """``POST /api/v1/idempotencyKeys/{key}/reset``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    task_identifier: str = Field(alias="taskIdentifier", min_length=1, max_length=128)
