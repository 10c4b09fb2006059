"""The bodies of the waitpoint token routes, in the shapes of ``@trigger.dev/core``'s
``CreateWaitpointTokenRequestBody`` and ``CompleteWaitpointTokenRequestBody``.

Unknown fields are refused (nothing sent is silently ignored); a refusal names the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reprise_server.shared.payloads import reject_unstorable

MAX_IDEMPOTENCY_KEY_LENGTH = 2048


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CreateTokenRequest(_Body):
    """``idempotencyKey`` (up to 2048 characters), ``idempotencyKeyTTL`` (a duration),
    ``timeout`` (a duration such as ``"1h"`` or an ISO-8601 date) and ``tags`` (one string
    or a list)."""

    idempotency_key: str | None = Field(
        None, alias="idempotencyKey", max_length=MAX_IDEMPOTENCY_KEY_LENGTH
    )
    idempotency_key_ttl: str | None = Field(None, alias="idempotencyKeyTTL")
    timeout: str | None = None
    tags: str | list[str] | None = None

    @model_validator(mode="after")
    def _storable(self) -> CreateTokenRequest:
        """Text Postgres cannot store (U+0000) is refused naming the field (a 400)."""
        for name, value in (("idempotencyKey", self.idempotency_key),
                            ("idempotencyKeyTTL", self.idempotency_key_ttl),
                            ("timeout", self.timeout), ("tags", self.tags)):
            if value is not None:
                reject_unstorable(value, name)
        return self


class CompleteTokenRequest(_Body):
    """``data``: any JSON value (absent or ``null``: the token completes with none)."""

    data: Any = None
