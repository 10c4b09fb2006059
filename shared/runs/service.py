"""Run rules the API and the workers share: trigger, cancel, read.

Services take a session first, never commit, and publish Celery messages only after the
surrounding transaction commits (:func:`shared.db.on_commit`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared.db import db_now
from reprise_server.shared.durations import DelayPolicy, DurationError, parse_delay, parse_duration
from reprise_server.shared.errors import InvalidInput, InvalidRunId, NotFound, RunNotFound
from reprise_server.shared.ids import TASK_ID_RE, is_run_id, new_run_id
from reprise_server.shared.packets.service import packet_exists
from reprise_server.shared.payloads import STORE, decode_payload, reject_nul
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs import repository as repo
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.options import RunOptions
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.states import RELEASES_IDEMPOTENCY_KEY, RunStatus
from reprise_server.shared.settings import get_settings
from reprise_server.shared.ttl.policy import effective_ttl

log = logging.getLogger("reprise.runs")


@dataclass(frozen=True)
class TriggerResult:
    run: Run
    is_cached: bool
    # Accepted as Trigger.dev accepts it, but probably not what was meant (sent back to
    # the caller in a header, and logged).
    warning: str | None = None


def idempotency_key_hash(key: str) -> str:
    """The SDK sends SHA-256 hex already; anything else (curl, other clients) is hashed here."""
    if re.fullmatch(r"[0-9a-f]{64}", key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def _existing_by_request_key(session: Session, auth: AuthContext, request_key: str) -> Run | None:
    existing = repo.find_by_request_key(session, auth.environment_id, request_key)
    if existing is None:
        return None
    window = timedelta(hours=get_settings().request_idempotency_hours)
    if existing.created_at >= db_now(session) - window:
        return existing
    repo.release_request_key(session, existing.id)
    return None


def retried_trigger(
    session: Session, auth: AuthContext, task_id: str, request_key: str | None
) -> Run | None:
    """The run a trigger of ``task_id`` with this per-request idempotency key already
    created (the SDK retrying a request whose response it lost), if any."""
    if not request_key:
        return None
    existing = _existing_by_request_key(session, auth, request_key[:128])
    return existing if existing is not None and existing.task_identifier == task_id else None


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


# How long an idempotency key deduplicates when the trigger gives no idempotencyKeyTTL
# (Trigger.dev's default).
DEFAULT_IDEMPOTENCY_KEY_TTL = timedelta(days=30)


def idempotency_key_expiry(session: Session, ttl: str | None) -> datetime:
    """When a key given now stops deduplicating: ``idempotencyKeyTTL`` (a duration such as
    ``10s``, ``5m``, ``1h``, ``7d``) from now, else 30 days."""
    if ttl is None:
        return db_now(session) + DEFAULT_IDEMPOTENCY_KEY_TTL
    try:
        seconds = parse_duration(ttl)
    except DurationError:
        raise InvalidInput(
            f"options.idempotencyKeyTTL must be a duration such as 30s, 10m, 1h or 7d, got {ttl!r}"
        ) from None
    if seconds <= 0:
        raise InvalidInput(f"options.idempotencyKeyTTL must be positive, got {ttl!r}")
    return db_now(session) + timedelta(seconds=seconds)


# Trigger (§4.1): a number is seconds from now; a date already past runs at once.
TRIGGER_DELAY = DelayPolicy(numbers=True, past="now")


@dataclass(frozen=True)
class NewRun:
    """Everything that defines a run at creation: by trigger, by replay, by a parent task."""

    task_identifier: str
    payload: Any
    payload_type: str
    options: RunOptions
    delay: str | int | float | None = None
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


def _due_time(delay: object, now: datetime) -> datetime | None:
    if delay is None or delay == "":
        return None
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
    registers is a 404). It is published or armed after commit (the lifecycle's insert)."""
    context = catalogue.creation_context(session, environment_id, spec.task_identifier)
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

    run = Run(
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
        priority=options.priority,
        machine=options.machine,
        is_test=options.is_test,
        debug_mode=spec.debug_mode,
        trigger_function=spec.trigger_function,
        triggered_by=spec.triggered_by,
        locked_version=options.lock_to_version,
        ttl_seconds=ttl,
        delayed_until=delayed_until,
        created_at=now,
        updated_at=now,
        replayed_from=spec.replayed_from,
        lineage_depth=spec.lineage_depth,
        depth=spec.depth,
        parent_run_id=spec.parent_run_id,
        root_run_id=spec.root_run_id,
        batch_id=spec.batch_id,
        schedule_id=spec.schedule_id,
        schedule_tick_at=spec.schedule_tick_at,
    )
    return lifecycle.insert(session, run)


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
    which names its ``batch_id``)."""
    if not TASK_ID_RE.match(task_id):
        raise InvalidInput("taskId must be 1 to 128 letters, digits or . _ - : /")
    reject_nul(options.model_dump(by_alias=True, exclude_none=True), "options")
    if request_key:
        request_key = request_key[:128]
        existing = _existing_by_request_key(session, auth, request_key)
        if existing is not None:
            return TriggerResult(existing, False)
    hashed = None
    if options.idempotency_key:
        hashed = idempotency_key_hash(options.idempotency_key)
        existing = existing_by_idempotency_key(session, auth.environment_id, task_id, hashed)
        if existing is not None:
            return TriggerResult(existing, True)
    key_expires_at = None
    if hashed:
        key_expires_at = idempotency_key_expiry(session, options.idempotency_key_ttl)
    elif options.idempotency_key_ttl is not None:
        # (one clock read per keyed trigger only; an unkeyed one has nothing to expire)
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
    spec = NewRun(
        **lineage,
        task_identifier=task_id,
        payload=payload,
        payload_type=payload_type,
        options=RunOptions.from_trigger(options),
        delay=options.delay,
        idempotency_key=options.user_idempotency_key,
        idempotency_key_hash=hashed,
        idempotency_key_expires_at=key_expires_at,
        request_idempotency_key=request_key,
        batch_id=batch_id,
        trigger_function="batchTrigger" if batch_id else "trigger",
    )
    try:
        run = create_run(session, auth.project_id, auth.environment_id, spec)
    except repo.DuplicateRun:
        # Another request inserted the same key between our read and our insert.
        winner = None
        if hashed:
            winner = repo.find_by_idempotency_key(session, auth.environment_id, task_id, hashed)
        if winner is None and request_key:
            winner = repo.find_by_request_key(session, auth.environment_id, request_key)
        if winner is None:
            raise
        return TriggerResult(winner, bool(hashed))
    if options.delay not in (None, "") and run.status is not RunStatus.DELAYED:
        warning = (
            f"options.delay {options.delay!r} is not in the future: the run was queued at once"
        )
        log.info("trigger of %s: %s", task_id, warning, extra={"run_id": run.id})
        return TriggerResult(run, False, warning)
    return TriggerResult(run, False)


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


def cancel_run(session: Session, run_id: str) -> Run | None:
    """Cancel a run that has not finished; a finished run is left as it is (§9): a
    queued or delayed run at once (its timers become no-ops), an executing one when its
    worker sees it on the next heartbeat."""
    return lifecycle.cancel(session, run_id)
