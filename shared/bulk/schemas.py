"""What a bulk action is asked to do, as the official SDK sends it (``runs.bulk.replay`` /
``runs.bulk.cancel``: ``@trigger.dev/core``'s ``CreateBulkActionRequestBody``), plus
Reprise's own options: ``dryRun``, ``maxPerSecond`` (replay) and the ``reschedule`` action
with its ``delay``.

Every field is honoured or refused: the filter fields Reprise cannot apply (``schedule``,
``machine``, ``region``), ``targetRegion`` and any unknown key are a 400 naming them, never
silently dropped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from reprise_server.shared.errors import BadRequest
from reprise_server.shared.ids import is_run_id
from reprise_server.shared.runs.filters import FilterWording, RunFilter, parse_period

MAX_RUN_IDS = 500
# A filter that names no time covers the runs created in the last 7 days, as Trigger.dev's.
DEFAULT_PERIOD = timedelta(days=7)
# The filter fields of the SDK's run list that Reprise has no column or concept for.
UNSUPPORTED_FILTERS = ("schedule", "machine", "region")

StrOrList = str | list[str]


# How a bulk action words a filter value it cannot use (the body's field names).
_WORDING = FilterWording(
    unknown_status="filter.status has an unknown status: {value}",
    created_from="filter.from must be an ISO-8601 date or epoch milliseconds",
    created_to="filter.to must be an ISO-8601 date or epoch milliseconds",
    period="filter.period must be a duration such as 1d",
    queue="filter.queue must be {type: task|custom, name}, a queue's name, or a list of them",
)


def _listed(value: StrOrList | None) -> list[str] | None:
    """The SDK sends one word or a list of them; a single word is never split at commas."""
    return [value] if isinstance(value, str) else value


def _non_empty(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return any(_non_empty(v) for v in value)
    if isinstance(value, str):
        return bool(value.strip())
    return True


class BulkFilter(BaseModel):
    """The run-list filter of a bulk action (the SDK's ``ListRunsQueryParams``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    status: StrOrList | None = None
    task_identifier: StrOrList | None = Field(None, alias="taskIdentifier")
    version: StrOrList | None = None
    tag: StrOrList | None = None
    from_: float | str | None = Field(None, alias="from")
    to: float | str | None = None
    period: str | None = None
    bulk_action: str | None = Field(None, alias="bulkAction")
    is_test: StrictBool | None = Field(None, alias="isTest")
    batch: str | None = None
    replays_only: StrictBool | None = Field(None, alias="replaysOnly")
    not_replayed: StrictBool | None = Field(None, alias="notReplayed")
    schedule: Any = None
    queue: Any = None
    machine: Any = None
    region: Any = None

    @model_validator(mode="after")
    def _applicable(self) -> BulkFilter:
        refused = [name for name in UNSUPPORTED_FILTERS if getattr(self, name) is not None]
        if refused:
            raise ValueError(
                f"filter.{refused[0]} cannot be applied by Reprise (it has no "
                f"{refused[0]}s); remove it or filter by something else"
            )
        if not any(_non_empty(v) for v in self.model_dump().values()):
            raise ValueError("At least one filter must be provided")
        return self

    def to_run_filter(self, api_version: str | None, now: datetime) -> RunFilter:
        """The filter, frozen at ``now``: runs created later (a bulk replay's own new runs
        among them) are never part of the action."""
        run_filter = RunFilter.build(
            _WORDING,
            api_version=api_version,
            statuses=_listed(self.status),
            task_identifiers=_listed(self.task_identifier),
            queues=self.queue,
            tags=_listed(self.tag),
            versions=_listed(self.version),
            created_from=self.from_,
            created_to=self.to,
            is_test=self.is_test,
            batch_id=self.batch,
            bulk_action_id=self.bulk_action,
            replays_only=self.replays_only,
            not_replayed=self.not_replayed,
        )
        if self.period and self.from_ is not None:
            raise BadRequest("filter.period and filter.from both set a start: send one")
        period = parse_period(self.period, _WORDING)
        if period is not None:
            run_filter = replace(run_filter, created_from=now - period)
        return freeze(run_filter, now)


def freeze(run_filter: RunFilter, now: datetime) -> RunFilter:
    """A filter as a bulk action keeps it: ending at ``now`` (runs created later are never
    part of the action), and covering the last 7 days when it names no time. Explicit run
    ids are not bounded in time."""
    if run_filter.run_ids:
        return run_filter
    created_from, created_to = run_filter.created_from, run_filter.created_to
    if created_from is None and created_to is None:
        created_from = now - DEFAULT_PERIOD
    return replace(run_filter, created_from=created_from,
                   created_to=min(created_to, now) if created_to is not None else now)


class BulkActionRequest(BaseModel):
    """The body of ``POST /api/v1/bulk-actions``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    action: Literal["replay", "cancel", "reschedule"]
    filter: BulkFilter | None = None
    run_ids: list[str] | None = Field(None, alias="runIds", min_length=1)
    name: str | None = Field(None, max_length=255)
    dry_run: StrictBool = Field(False, alias="dryRun")
    max_per_second: float | None = Field(None, alias="maxPerSecond", ge=0.1, le=100_000)
    delay: str | None = Field(None, min_length=1, max_length=64)
    target_region: Any = Field(None, alias="targetRegion")

    @field_validator("run_ids")
    @classmethod
    def _run_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) > MAX_RUN_IDS:
            raise ValueError(
                f"Too many runIds ({len(value)}). Maximum is {MAX_RUN_IDS}. "
                "Use a filter to select more runs."
            )
        bad = next((v for v in value if not is_run_id(v)), None)
        if bad is not None:
            raise ValueError(f"runIds has an invalid run ID: {bad}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> BulkActionRequest:
        if (self.filter is None) == (self.run_ids is None):
            raise ValueError("Exactly one of filter or runIds must be provided")
        if self.target_region is not None:
            raise ValueError("targetRegion cannot be honoured: Reprise has no regions")
        if self.max_per_second is not None and self.action != "replay":
            raise ValueError("maxPerSecond applies to a bulk replay only")
        if (self.delay is not None) != (self.action == "reschedule"):
            raise ValueError("delay is required by a bulk reschedule, and only by it")
        return self
