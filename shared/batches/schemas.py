"""The batch requests as the official SDK sends them (``@trigger.dev/core``'s
``CreateBatchRequestBody`` and ``BatchItemNDJSON``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reprise_server.shared.runs.schemas import IdempotencyKeyOptions, TriggerOptions

MAX_BATCH_SIZE = 1000


class CreateBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    run_count: int = Field(alias="runCount", ge=1, le=MAX_BATCH_SIZE, strict=True)
    task_identifiers: list[str] | None = Field(default=None, alias="taskIdentifiers")
    parent_run_id: str | None = Field(default=None, alias="parentRunId")
    resume_parent_on_completion: bool | None = Field(
        default=None, alias="resumeParentOnCompletion"
    )
    idempotency_key: str | None = Field(default=None, alias="idempotencyKey", max_length=2048)
    idempotency_key_options: IdempotencyKeyOptions | None = Field(
        default=None, alias="idempotencyKeyOptions"
    )

    @field_validator("task_identifiers")
    @classmethod
    def _some_tasks(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(value)):
            raise ValueError("taskIdentifiers must name at least one task, none empty")
        return value

    @property
    def user_idempotency_key(self) -> str | None:
        return IdempotencyKeyOptions.user_key(self.idempotency_key, self.idempotency_key_options)


class BatchItemLine(BaseModel):
    """One line of the item stream: the item's index in the batch, its task, and the
    trigger's own payload and options."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, strict=True)
    task: str = Field(min_length=1)
    payload: Any = None
    options: TriggerOptions = Field(default_factory=TriggerOptions)
