"""Run rules the API and the workers share: trigger, cancel, read.

Services take a session first, never commit, and publish Celery messages only after the
surrounding transaction commits (:func:`shared.db.on_commit`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared import idempotency
from reprise_server.shared.db import db_now
from reprise_server.shared.durations import DelayPolicy, DurationError, parse_delay
from reprise_server.shared.errors import (
    InvalidInput,
    InvalidRunId,
    NotFound,
    RepriseError,
    RunNotFound,
)
from reprise_server.shared.flow import limits as limits_service
from reprise_server.shared.flow.admission import PAUSED, WAITING, queue_key
from reprise_server.shared.idempotency import Answer, Finder
from reprise_server.shared.ids import TASK_ID_RE, is_run_id, new_run_id
from reprise_server.shared.packets.service import packet_exists
from reprise_server.shared.payloads import STORE, decode_payload, reject_unstorable
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs import repository as repo
from reprise_server.shared.runs.metadata import check_metadata_size
from reprise_server.shared.runs.models import Run, detached_run
from reprise_server.shared.runs.options import RunOptions
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.states import RELEASES_IDEMPOTENCY_KEY, RunStatus
from reprise_server.shared.ttl.policy import effective_ttl

log = logging.getLogger("reprise.runs")


@dataclass(frozen=True)
class TriggerResult:
    run: Run
    is_cached: bool
    # Accepted as Trigger.dev accepts it, but probably not what was meant (sent back to
    # the caller in a header, and logged).
    warning: str | None = None


def retried_trigger(
    session: Session, auth: AuthContext, task_id: str, request_key: str | None
) -> Run | None:
    """The run a trigger of ``task_id`` with this per-request idempotency key already
    created (the SDK retrying a request whose response it lost), if any."""
    earlier = _retry(session, auth.environment_id, idempotency.request_key(request_key))
    return earlier.row if earlier is not None and earlier.row.task_identifier == task_id else None


def _retry(session: Session, environment_id: str, request_key: str | None) -> Answer[Run] | None:
    """The run of an earlier request with this request key, within the window (a key
    past it is released: :mod:`shared.idempotency`)."""
    if not request_key:
        return None
    return idempotency.retry_of(
        repo.find_by_request_key(session, environment_id, request_key),
        lambda: db_now(session),
        lambda run: repo.release_request_key(session, run.id),
    )


def existing_by_idempotency_key(
    session: Session, environment_id: str, task_id: str, key_hash: str
) -> Run | None:
    """The live run of the task holding the key; a key whose run failed or whose
    ``idempotencyKeyTTL`` passed is released (None)."""
    existing = repo.find_by_idempotency_key(session, environment_id, task_id, key_hash)
    if existing is None:
        return None
    expired = (existing.idempotency_key_expires_at is not None
               and existing.idempotency_key_expires_at <= db_now(session))
    if existing.status in RELEASES_IDEMPOTENCY_KEY or expired:
        repo.release_idempotency_key(session, existing.id)
        return None
    return existing


def earlier_runs(
    session: Session, environment_id: str, task_id: str, request_key: str | None,
    key_hash: str | None,
) -> list[Finder[Run]]:
    """Where an earlier trigger's run is found: by the request key (a retry), then by the
    idempotency key (its live holder)."""
    finders: list[Finder[Run]] = []
    if request_key:
        finders.append(lambda: _retry(session, environment_id, request_key))
    if key_hash:
        finders.append(lambda: idempotency.holder(
            existing_by_idempotency_key(session, environment_id, task_id, key_hash)))
    return finders


# Trigger: a number is seconds from now; a date already past runs at once.
TRIGGER_DELAY = DelayPolicy(numbers=True, past="now")


@dataclass(frozen=True)
class NewRun:
    """Everything that defines a run at creation: by trigger, by replay, by a parent task."""

    task_identifier: str
    payload: Any
    payload_type: str
    options: RunOptions
    # As asked (the trigger's delay policy reads it), or a date already resolved (a replay's).
    delay: str | int | float | datetime | None = None
    run_id: str | None = None
    idempotency_key: str | None = None
    idempotency_key_hash: str | None = None
    idempotency_key_expires_at: datetime | None = None
    request_idempotency_key: str | None = None
    replayed_from: str | None = None
    lineage_depth: int = 0
    debug_mode: bool = False
    trigger_function: str = "trigger"
    triggered_by: str = "api"
    depth: int = 0
    parent_run_id: str | None = None
    root_run_id: str | None = None
    batch_id: str | None = None
    schedule_id: str | None = None
    schedule_tick_at: datetime | None = None
    # The RUN waitpoint this run's end completes (a parent's trigger_and_wait).
    waitpoint_id: str | None = None
    resumed_from: dict[str, Any] | None = None


def _due_time(delay: object, now: datetime) -> datetime | None:
    if delay is None or delay == "":
        return None
    if isinstance(delay, datetime):
        return delay if delay > now else None
    try:
        due = parse_delay(delay, now, TRIGGER_DELAY)
    except DurationError:
        raise InvalidInput(f"options.delay is invalid: {delay}") from None
    return due if due > now else None


def locked_task_defaults(
    session: Session, environment_id: str, task_identifier: str, version: str
) -> dict[str, Any]:
    """The task's options in ``version``; 400 naming the version if it is not registered in
    the environment or lacks the task."""
    registered, options = catalogue.version_task_options(
        session, environment_id, version, task_identifier
    )
    if not registered:
        raise InvalidInput(
            f"Task locked to version '{version}', but no worker found with that version."
        )
    if options is None:
        raise InvalidInput(f"Task '{task_identifier}' not found on locked version '{version}'.")
    return options


def create_run(session: Session, project_id: str, environment_id: str, spec: NewRun) -> Run:
    """Create a run: DELAYED when it has a delay, else QUEUED if the environment's
    current version has the task, else PENDING_VERSION (a task no version of the project
    registers is a 404). It is published or armed after commit (the lifecycle's insert).

    Its values come from its creation context (the current version's declarations, the
    paused queues, the default TTL). Without a delay (which needs the clock first), the
    run is built from the context this process last saw for the task and inserted by a
    statement that reads the context again and inserts only if it is that one: one round
    trip instead of two. If nothing was inserted (the context changed, or a key is taken),
    the context is read and the run built again and inserted as it always was
    (docs/architecture.md#creating-a-run)."""
    expected = None
    if spec.delay is None or spec.delay == "":
        expected = catalogue.expected_context(session, environment_id, spec.task_identifier)
    if expected is not None:
        try:
            run = _run_in_context(session, project_id, environment_id, spec, expected)
        except RepriseError:
            pass  # refused only for the context as it is now, read below
        else:
            if lifecycle.insert_in_context(session, run, catalogue.guard_params(expected)):
                return run
    context = catalogue.creation_context(session, environment_id, spec.task_identifier)
    run = _run_in_context(session, project_id, environment_id, spec, context)
    run.created_at = run.updated_at = context.now
    return lifecycle.insert(session, run)


def _run_in_context(
    session: Session, project_id: str, environment_id: str, spec: NewRun,
    context: catalogue.CreationContext,
) -> Run:
    """The run ``spec`` asks for, in ``context``: its status, options and limits (the
    clock only read for a delay), created at the INSERT's ``now()`` unless set."""
    now, found = context.now, context.version
    if found is None and not catalogue.task_known_in_project(
        session, project_id, spec.task_identifier
    ):
        raise NotFound(f"Task not found: no worker has registered a task '{spec.task_identifier}'")
    if spec.options.lock_to_version:
        # Locked to a version (Trigger.dev's lockToVersion, the SDK's `version`): it must be
        # registered and have the task, as Trigger.dev refuses otherwise; its workers run it.
        found = (spec.options.lock_to_version,
                 locked_task_defaults(session, environment_id, spec.task_identifier,
                                      spec.options.lock_to_version))
    task_defaults: dict[str, Any] = found[1] if found else {}
    options = spec.options.resolved(task_defaults)
    try:
        ttl = effective_ttl(options.ttl, task_defaults.get("ttl"), context.default_ttl_seconds)
    except DurationError as exc:
        raise InvalidInput(f"options.ttl is invalid: {exc}") from None
    delayed_until = _due_time(spec.delay, now)
    if delayed_until is not None:
        status = RunStatus.DELAYED
    elif found is None:
        status = RunStatus.PENDING_VERSION
    else:
        status = RunStatus.QUEUED
    limits = run_limits(session, environment_id, task_defaults if found else None,
                        options.concurrency)
    held_back = None
    if status is RunStatus.QUEUED:
        if queue_key(options.queue, spec.task_identifier) in context.paused_queues:
            held_back = PAUSED
        elif limits:
            held_back = WAITING

    return detached_run(
        id=spec.run_id or new_run_id(),
        project_id=project_id,
        environment_id=environment_id,
        task_identifier=spec.task_identifier,
        status=status,
        payload=spec.payload,
        payload_type=spec.payload_type,
        idempotency_key=spec.idempotency_key,
        idempotency_key_hash=spec.idempotency_key_hash,
        idempotency_key_expires_at=spec.idempotency_key_expires_at,
        request_idempotency_key=spec.request_idempotency_key,
        tags=options.tags,
        metadata_=options.metadata,
        max_attempts=options.max_attempts,
        max_duration_seconds=options.max_duration,
        queue=options.queue,
        concurrency_key=options.concurrency_key,
        concurrency_limits=limits,
        concurrency_override=(
            list(options.concurrency) if options.concurrency is not None else None
        ),
        admission=held_back,
        priority=options.priority,
        machine=options.machine,
        is_test=options.is_test,
        debug_mode=spec.debug_mode,
        trigger_function=spec.trigger_function,
        triggered_by=spec.triggered_by,
        locked_version=options.lock_to_version,
        ttl_seconds=ttl,
        delayed_until=delayed_until,
        replayed_from=spec.replayed_from,
        lineage_depth=spec.lineage_depth,
        depth=spec.depth,
        parent_run_id=spec.parent_run_id,
        root_run_id=spec.root_run_id,
        batch_id=spec.batch_id,
        waitpoint_id=spec.waitpoint_id,
        resumed_from=spec.resumed_from,
        schedule_id=spec.schedule_id,
        schedule_tick_at=spec.schedule_tick_at,
    )


def run_limits(
    session: Session, environment_id: str, task_defaults: dict[str, Any] | None,
    named: tuple[str, ...] | None,
) -> list[str] | None:
    """The concurrency limits a new run holds: those its task declares, the named ones
    replaced by ``named`` (a trigger's ``concurrency``; each must be a limit of the
    environment: 400 naming it). ``task_defaults`` None: no version has the task yet (the
    run waits for one), so only ``named`` is kept, and the version's declaration is added
    when the run is released. None when it holds none (the fast path)."""
    if named:
        known = limits_service.existing_limit_names(session, environment_id, named)
        unknown = [name for name in named if name not in known]
        if unknown:
            raise InvalidInput(
                f"options.concurrency names a concurrency limit no worker version declares "
                f"in this environment: {unknown[0]!r}"
            )
    if task_defaults is None:
        return list(dict.fromkeys(named)) if named else None
    declared: list[str] = list(task_defaults.get("concurrency_limits") or ())
    if named is not None:
        declared = [name for name in declared if name.startswith("task/")] + list(named)
    return list(dict.fromkeys(declared)) or None


def trigger_run(
    session: Session,
    auth: AuthContext,
    task_id: str,
    raw_payload: Any,
    options: TriggerOptions,
    request_key: str | None = None,
    *,
    batch_id: str | None = None,
) -> TriggerResult:
    """Trigger a task (``POST /api/v1/tasks/{taskId}/trigger``, and each item of a batch,
    which names its ``batch_id``); a retried request or a held idempotency key answers
    the earlier run (:mod:`shared.idempotency`)."""
    if not TASK_ID_RE.match(task_id):
        raise InvalidInput("taskId must be 1 to 128 letters, digits or . _ - : /")
    reject_unstorable(options.model_dump(by_alias=True, exclude_none=True), "options")
    check_metadata_size(options.metadata)
    request_key = idempotency.request_key(request_key)
    key_hash = idempotency.hash_key(options.idempotency_key) if options.idempotency_key else None
    answer = idempotency.insert_or_winner(
        lambda: create_run(session, auth.project_id, auth.environment_id, _new_run(
            session, auth, task_id, raw_payload, options, request_key, key_hash, batch_id)),
        earlier_runs(session, auth.environment_id, task_id, request_key, key_hash),
    )
    run = answer.row
    if answer.new and options.delay not in (None, "") and run.status is not RunStatus.DELAYED:
        warning = (
            f"options.delay {options.delay!r} is not in the future: the run was queued at once"
        )
        log.info("trigger of %s: %s", task_id, warning, extra={"run_id": run.id})
        return TriggerResult(run, False, warning)
    return TriggerResult(run, answer.cached)


def _new_run(
    session: Session, auth: AuthContext, task_id: str, raw_payload: Any,
    options: TriggerOptions, request_key: str | None, key_hash: str | None,
    batch_id: str | None,
) -> NewRun:
    """The run a trigger asks for, its payload, key expiry and parent checked."""
    key_expires_at = None
    if key_hash:  # (one clock read per keyed trigger only: an unkeyed one has nothing to expire)
        key_expires_at = idempotency.key_expiry(db_now(session), options.idempotency_key_ttl)
    elif options.idempotency_key_ttl is not None:
        raise InvalidInput("options.idempotencyKeyTTL needs options.idempotencyKey")
    payload, payload_type = decode_payload(raw_payload, options.payload_type)
    if payload_type == STORE and not packet_exists(session, auth.environment_id, payload):
        raise InvalidInput(
            f"payload names a packet that was not uploaded: {payload} "
            "(PUT /api/v2/packets/{path} first)"
        )
    lineage: dict[str, Any] = {}
    if options.parent_run_id:
        # Sent by the SDK inside a task: the new run is that run's child.
        parent = repo.get_run(session, auth.environment_id, options.parent_run_id)
        if parent is None:
            raise InvalidInput(
                f"options.parentRunId names no run of this environment: {options.parent_run_id}"
            )
        lineage = {"depth": parent.depth + 1, "parent_run_id": parent.id,
                   "root_run_id": parent.root_run_id or parent.id, "triggered_by": "task"}
    return NewRun(
        **lineage,
        task_identifier=task_id,
        payload=payload,
        payload_type=payload_type,
        options=RunOptions.from_trigger(options),
        delay=options.delay,
        idempotency_key=options.user_idempotency_key,
        idempotency_key_hash=key_hash,
        idempotency_key_expires_at=key_expires_at,
        request_idempotency_key=request_key,
        batch_id=batch_id,
        trigger_function="batchTrigger" if batch_id else "trigger",
    )


def get_run_for(session: Session, auth: AuthContext, run_id: str) -> Run:
    """A run of the caller's environment; 400 for a malformed id, 404 for any other."""
    if not run_id or not is_run_id(run_id):
        raise InvalidRunId()
    run = repo.get_run(session, auth.environment_id, run_id)
    # A public token's scopes name the runs it reads (by id, task, tag or batch): any other
    # run is as invisible as another environment's.
    if run is None or not auth.may_read_run(
        run.id, run.task_identifier, run.tags or [], run.batch_id
    ):
        raise RunNotFound()
    return run


def cancel_run(session: Session, run_id: str, *, children: bool = False) -> Run | None:
    """Cancel a run that has not finished; a finished run is left as it is: a
    queued, delayed or waiting run at once (its timers become no-ops), an executing one
    when its worker sees it on the next heartbeat. With ``children``, every unfinished run
    it triggered (and theirs, to any depth) is canceled too."""
    canceled = lifecycle.cancel(session, run_id)
    if children:
        for descendant in repo.unfinished_descendants(session, run_id):
            lifecycle.cancel(session, descendant)
    return canceled
