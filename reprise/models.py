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

# The statuses a run never leaves: ``runs.poll`` returns once the run has one of them.
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELED", "CRASHED", "SYSTEM_FAILURE",
                            "EXPIRED", "TIMED_OUT"})


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
    # A replay that started from a step (``{"step", "position"}``) or a checkpoint
    # (``{"checkpoint"}``) of the run it replays.
    resumed_from: dict[str, Any] | None = None


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
    """The handle of a new run: what :meth:`reprise.tasks.trigger` and
    :meth:`reprise.runs.replay` return.

    ``is_cached`` is true when an idempotency key matched an existing run (no new run was
    created; a replay is never cached); ``public_access_token`` is the read-only JWT of the
    ``x-trigger-jwt`` header, when the server sends one.
    """

    id: str
    is_cached: bool = False
    public_access_token: str | None = None


class CanceledRun(ApiModel):
    """What :meth:`reprise.runs.cancel` returns (the official SDK's ``{id}``)."""

    id: str


# The statuses a bulk action never leaves: ``runs.bulk.poll`` returns once it has one.
BULK_FINAL_STATUSES = frozenset({"COMPLETED", "ABORTED"})


class BulkActionCounts(ApiModel):
    """How far a bulk action got: ``total`` runs selected, ``success`` and ``failure`` so
    far (a run that cannot take the action, e.g. one already finished for a cancel, is a
    failure)."""

    total: int = 0
    success: int = 0
    failure: int = 0

    @property
    def processed(self) -> int:
        return self.success + self.failure


class BulkAction(ApiModel):
    """A bulk action of :data:`reprise.runs.bulk` (Trigger.dev's ``BulkActionObject``, plus
    Reprise's ``action``, ``selection``, ``max_per_second`` and ``delayed_until``).

    ``status`` is PENDING while it works through its runs, then COMPLETED or ABORTED."""

    id: str
    name: str | None = None
    type: str
    action: str | None = None
    status: str
    counts: BulkActionCounts = Field(default_factory=BulkActionCounts)
    created_at: datetime
    completed_at: datetime | None = None
    selection: dict[str, Any] | None = None
    source: str | None = None
    max_per_second: float | None = None
    delayed_until: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in BULK_FINAL_STATUSES


class BulkActionHandle(ApiModel):
    """What creating or aborting a bulk action returns: its ``id``."""

    id: str


class BulkActionPreview(ApiModel):
    """What a bulk action with ``dry_run=True`` returns: nothing was done; ``count`` runs
    match, ``run_ids`` names the first ten."""

    dry_run: bool = True
    count: int
    run_ids: list[str] = Field(default_factory=list)


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


class QueueConcurrency(ApiModel):
    """A task queue's concurrency: its task's own limit's ``total`` (``current`` is what
    applies: the ``override`` if set, else the declared ``base``; None is unbounded)."""

    current: int | None = None
    base: int | None = None
    override: int | None = None
    overridden_at: datetime | None = None
    overridden_by: str | None = None


class QueueItem(ApiModel):
    """A queue of :data:`reprise.queues` (Trigger.dev's ``QueueItem``): a task's own
    (``type="task"``, named ``task/<taskId>``) or a named one (``type="custom"``).

    ``running`` counts its runs dequeued or executing, ``queued`` those waiting. Reprise's
    queues are V2 (``version``): only lines, their concurrency is a limit's
    (:data:`reprise.concurrency_limits`); ``concurrency_limit`` and ``concurrency`` are
    read from a V1 server only."""

    id: str
    name: str
    type: str
    running: int = 0
    queued: int = 0
    paused: bool = False
    version: str = "V1"
    concurrency_limit: int | None = None
    concurrency: QueueConcurrency | None = None


class ConcurrencyBound(ApiModel):
    """One bound of a limit (``total`` or ``per_key``): ``current`` is what applies now
    (None: unbounded), ``base`` the declared value, ``override`` the runtime one."""

    current: int | None = None
    base: int | None = None
    override: int | None = None
    overridden_at: datetime | None = None


class ConcurrencyLimitItem(ApiModel):
    """A concurrency limit of :data:`reprise.concurrency_limits` (Trigger.dev's
    ``ConcurrencyLimitItem``): ``running`` counts the runs holding a slot, ``queued`` those
    waiting in its line."""

    id: str
    name: str
    per_key: ConcurrencyBound
    total: ConcurrencyBound
    running: int = 0
    queued: int = 0
    paused: bool = False


class ConcurrencyKeyBound(ApiModel):
    """A limit's per-key bound as one ``concurrencyKey`` sees it: ``override`` is the
    key's temporary cap (until ``expires_at``), ``base`` the limit's per-key bound."""

    current: int | None = None
    base: int | None = None
    override: int | None = None
    expires_at: datetime | None = None


class ConcurrencyLimitKeyItem(ApiModel):
    """A limit seen from one ``concurrencyKey`` (Trigger.dev's ``ConcurrencyLimitKeyItem``)."""

    name: str
    concurrency_key: str
    per_key: ConcurrencyKeyBound
    running: int = 0
    paused: bool = False


class TraceEvent(ApiModel):
    """Something that happened inside a span: a log line (``name`` "log", its level,
    logger, message and traceback in ``properties``)."""

    name: str
    time: datetime
    properties: dict[str, Any] = Field(default_factory=dict)


class TraceSpanData(ApiModel):
    message: str
    task_slug: str | None = None
    events: list[TraceEvent] = Field(default_factory=list)
    start_time: datetime
    # Nanoseconds, as Trigger.dev's.
    duration: int
    is_error: bool = False
    is_partial: bool = False
    is_cancelled: bool = False
    level: str = "TRACE"
    worker_version: str | None = None
    queue_name: str | None = None
    machine_preset: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class TraceSpan(ApiModel):
    """A span of a run's trace. ``kind`` says what it is: run, delay, queue, attempt,
    backoff, checkpoint (a point) or child (a child run: ``linked_run_id``)."""

    id: str
    parent_id: str | None = None
    run_id: str
    data: TraceSpanData
    children: list[TraceSpan] = Field(default_factory=list)

    @property
    def kind(self) -> str:
        return str(self.data.properties.get("kind", ""))

    @property
    def duration_ms(self) -> float:
        return self.data.duration / 1_000_000

    @property
    def linked_run_id(self) -> str | None:
        linked = self.data.properties.get("linkedRunId")
        return str(linked) if linked else None

    def walk(self) -> list[TraceSpan]:
        """This span and every span under it, depth first."""
        found = [self]
        for child in self.children:
            found.extend(child.walk())
        return found


class RunTrace(ApiModel):
    trace_id: str
    root_span: TraceSpan


class WaitpointToken(ApiModel):
    """A token :data:`reprise.waitpoints` created (``wait.createToken``'s answer): a run
    waits for it with ``ctx.wait_for_token(token.id)``; anyone may complete it by POSTing
    JSON to ``url`` (no key needed); ``public_access_token`` (a JWT) may complete it through
    the API. ``is_cached``: an earlier token with the same idempotency key."""

    id: str
    url: str
    is_cached: bool = False
    public_access_token: str | None = None


class WaitpointTokenItem(ApiModel):
    """A token as listed (Trigger.dev's ``WaitpointTokenItem``): ``status`` is ``WAITING``,
    ``COMPLETED`` or ``TIMED_OUT``; ``timeout_at`` when it times out if not completed."""

    id: str
    url: str
    status: str
    tags: list[str] = Field(default_factory=list)
    created_at: datetime
    completed_at: datetime | None = None
    timeout_at: datetime | None = None
    idempotency_key: str | None = None
    idempotency_key_expires_at: datetime | None = None


class WaitpointTokenDetail(WaitpointTokenItem):
    """A token retrieved: once ``COMPLETED``, ``output`` is the data it was completed with
    (decoded from the JSON string of the wire); once ``TIMED_OUT``, ``output_is_error`` and
    ``error`` says when it timed out."""

    output: Any = None
    output_type: str | None = None
    output_is_error: bool = False
    error: str | None = None

