"""Typed results of the SDK: the API's camelCase JSON as pydantic models.

Fields use snake_case in Python and accept the camelCase keys of the wire (``run.task_identifier``
reads ``taskIdentifier``). Unknown keys are kept (``extra="allow"``) so a newer server never
breaks an older client; fields the server omits are ``None`` (or empty for lists).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_json_dict(self) -> dict[str, Any]:
        """The wire shape again: camelCase keys, ISO dates, absent fields omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RunError(ApiModel):
    message: str = ""
    name: str | None = None
    stack_trace: str | None = None


class Attempt(ApiModel):
    id: str
    status: str
    error: RunError | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class RunSummary(ApiModel):
    """The fields every shape of a run carries (list items, related runs, the full run)."""

    id: str
    status: str
    task_identifier: str
    version: str | None = None
    idempotency_key: str | None = None
    created_at: datetime
    updated_at: datetime | None = None
    is_test: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    delayed_until: datetime | None = None
    ttl: str | None = None
    expired_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    cost_in_cents: float | None = None
    base_cost_in_cents: float | None = None
    duration_ms: int | None = None
    depth: int | None = None
    batch_id: str | None = None
    trigger_function: str | None = None
    is_queued: bool = False
    is_executing: bool = False
    is_waiting: bool = False
    is_completed: bool = False
    is_success: bool = False
    is_failed: bool = False
    is_cancelled: bool = False
    replayed_from: str | None = None
    lineage_depth: int | None = None


class RunEnvironment(ApiModel):
    id: str
    name: str


class RunListItem(RunSummary):
    """One run of :meth:`reprise.runs.list`."""

    env: RunEnvironment | None = None


class RelatedRuns(ApiModel):
    root: RunSummary | None = None
    parent: RunSummary | None = None
    children: list[RunSummary] = Field(default_factory=list)


class Run(RunSummary):
    """The full run of :meth:`reprise.runs.retrieve` and :meth:`reprise.runs.reschedule`."""

    payload: Any = None
    payload_presigned_url: str | None = None
    output: Any = None
    output_presigned_url: str | None = None
    error: RunError | None = None
    schedule: dict[str, Any] | None = None
    related_runs: RelatedRuns = Field(default_factory=RelatedRuns)
    attempts: list[Attempt] = Field(default_factory=list)
    attempt_count: int = 0
    execution_trace: dict[str, Any] | None = None


class TriggeredRun(ApiModel):
    """What :meth:`reprise.tasks.trigger` returns.

    ``is_cached`` is true when an idempotency key matched an existing run (no new run was
    created); ``public_access_token`` is the read-only JWT of the ``x-trigger-jwt`` header.
    """

    id: str
    is_cached: bool = False
    public_access_token: str | None = None


class ScheduleGenerator(ApiModel):
    type: str = "CRON"
    expression: str
    description: str = ""


class ScheduleEnvironment(ApiModel):
    id: str
    type: str


class Schedule(ApiModel):
    """A cron schedule of :data:`reprise.schedules` (Trigger.dev's ``ScheduleObject``).

    ``next_run`` is its next tick (None while inactive); ``next_runs`` the next five."""

    id: str
    type: str
    task: str
    active: bool
    generator: ScheduleGenerator
    timezone: str
    deduplication_key: str | None = None
    external_id: str | None = None
    next_run: datetime | None = None
    next_runs: list[datetime] = Field(default_factory=list)
    last_run: datetime | None = None
    environments: list[ScheduleEnvironment] = Field(default_factory=list)


class RunLogLine(ApiModel):
    """One line of a run's log (``runs.logs``): ``seq`` orders a run's lines and is the
    cursor to pass as ``after``."""

    seq: int
    attempt_number: int
    logged_at: datetime
    level: str
    logger: str
    message: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    exception: str | None = None
