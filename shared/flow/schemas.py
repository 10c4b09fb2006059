"""The bodies of the concurrency-limit and queue routes, in the shapes of
``@trigger.dev/core``'s ``OverrideConcurrencyLimitRequestBody``,
``ResetConcurrencyLimitRequestBody`` and the queue calls (``pauseQueue``,
``overrideQueueConcurrencyLimit``, ``resetQueueConcurrencyLimit``).

Unknown fields are refused (nothing sent is silently ignored); a refusal names the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from reprise_server.shared.flow.limits import MAX_BOUND
from reprise_server.shared.payloads import reject_unstorable
from reprise_server.shared.runs.schemas import ConcurrencyKey


def _bound(value: Any) -> Any:
    """An integer from 0 to 100000 (a JSON number with no fraction, as zod's ``int()``)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BOUND:
        raise ValueError(f"must be an integer from 0 to {MAX_BOUND}")
    return value


def _ttl(value: Any) -> Any:
    """A duration string (``"7d"``) or a positive whole number of seconds."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a duration such as '7d' or a positive whole number of seconds")
    return value


Bound = Annotated[int | None, BeforeValidator(_bound)]
Ttl = Annotated[str | int | None, BeforeValidator(_ttl)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _storable_key(key: str | None) -> str | None:
    if key is not None:
        reject_unstorable(key, "concurrencyKey")
    return key


class OverrideLimitRequest(_Body):
    """The limit's own bounds (``perKey`` and/or ``total``), or with a ``concurrencyKey`` a
    temporary cap on that key (``perKey``, optional ``ttl``; ``total`` refused)."""

    per_key: Bound = Field(None, alias="perKey")
    total: Bound = None
    concurrency_key: ConcurrencyKey = Field(None, alias="concurrencyKey")
    ttl: Ttl = None

    @model_validator(mode="after")
    def _consistent(self) -> OverrideLimitRequest:
        _storable_key(self.concurrency_key)
        if self.concurrency_key is not None:
            if self.per_key is None:
                raise ValueError("perKey: a per-key override needs perKey")
            if self.total is not None:
                raise ValueError(
                    "total: total is not per key; omit it when overriding one concurrencyKey"
                )
            return self
        if self.ttl is not None:
            raise ValueError(
                "ttl: ttl only applies to a per-key override; pass concurrencyKey with it"
            )
        if self.per_key is None and self.total is None:
            raise ValueError("Provide at least one of perKey or total")
        return self


class ResetLimitRequest(_Body):
    """``{}`` resets the limit's own override; ``{concurrencyKey}`` that key's."""

    concurrency_key: ConcurrencyKey = Field(None, alias="concurrencyKey")

    @model_validator(mode="after")
    def _storable(self) -> ResetLimitRequest:
        _storable_key(self.concurrency_key)
        return self


class PauseRequest(_Body):
    """``pauseConcurrencyLimit``: ``{action}``."""

    action: Literal["pause", "resume"]


QueueType = Literal["id", "task", "custom"]


class PauseQueueRequest(PauseRequest):
    """``pauseQueue``: ``{type, action}`` (``type`` says what the path names: ``id``
    (default), ``task`` (a task id) or ``custom`` (a named queue))."""

    type: QueueType = "id"


class OverrideQueueRequest(_Body):
    """``overrideQueueConcurrencyLimit``: ``{type, concurrencyLimit}``."""

    type: QueueType = "id"
    concurrency_limit: Annotated[int, BeforeValidator(_bound)] = Field(alias="concurrencyLimit")


class ResetQueueRequest(_Body):
    """``resetQueueConcurrencyLimit``: ``{type}``."""

    type: QueueType = "id"
