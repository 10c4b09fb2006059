"""Replay: what a replay copies from the original, what its body changes (read once, at
accept, into a :class:`ReplayPlan` the command row stores), the checks that make an accepted
replay creatable, and the new run's creation when the command is applied.

The flow and the decisions (environment by slug or id, which errors are which, a delay
counted from the accept, Strait's checkpoint): docs/architecture.md#replay and
docs/api.md#errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared import idempotency
from reprise_server.shared.commands.appliers import LockedCommand, register_applier
from reprise_server.shared.commands.errors import (
    CheckpointNotFound,
    EnvironmentNotFound,
    ReplayFailed,
)
from reprise_server.shared.commands.models import CommandKind
from reprise_server.shared.commands.schemas import ReplayRequest
from reprise_server.shared.durable import service as durable
from reprise_server.shared.durations import (
    DelayPolicy,
    DurationError,
    iso,
    parse_datetime,
    parse_delay,
    parse_ttl,
)
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.packets.service import run_payload
from reprise_server.shared.payloads import (
    JSON,
    STORE,
    SUPERJSON,
    TEXT,
    decode_payload,
    reject_unstorable,
)
from reprise_server.shared.projects import repository as projects_repo
from reprise_server.shared.projects.models import ENVIRONMENT_SLUGS
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import attempts_repository as attempts_repo
from reprise_server.shared.runs.metadata import check_metadata_size
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.options import RunOptions
from reprise_server.shared.runs.schemas import machine_name, queue_name
from reprise_server.shared.runs.service import NewRun, create_run, locked_task_defaults

# Like a trigger's: a number is seconds, a date already past runs at once; but a duration
# counts from the accept, so the plan records the date.
REPLAY_DELAY = DelayPolicy(numbers=True, past="now")


@dataclass(frozen=True)
class KeyPlan:
    """The idempotency key the new run will hold."""

    key: str
    hash: str
    expires_at: datetime


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay changes from its original, resolved once at accept.

    ``option_changes`` are :class:`RunOptions` fields; ``ttl_seconds`` None keeps the
    original's TTL (``0``: none); ``payload_type`` None keeps the original's payload
    (a replaced payload may be ``None``); ``due`` None runs at once.
    """

    option_changes: dict[str, Any] = field(default_factory=dict)
    ttl_seconds: int | None = None
    due: datetime | None = None
    payload: Any = None
    payload_type: str | None = None
    key: KeyPlan | None = None
    checkpoint: int | None = None
    # A replay from a step: the original's record before ``step_position`` is reused.
    from_step: str | None = None
    step_position: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The plan as the command row stores it (``arguments["plan"]``)."""
        key = self.key and {"key": self.key.key, "hash": self.key.hash,
                            "expires_at": iso(self.key.expires_at)}
        data = {"option_changes": self.option_changes or None, "ttl_seconds": self.ttl_seconds,
                "due": iso(self.due), "payload_type": self.payload_type, "key": key,
                "checkpoint": self.checkpoint, "from_step": self.from_step,
                "step_position": self.step_position}
        if self.payload_type is not None:
            data["payload"] = self.payload
        return {name: value for name, value in data.items()
                if value is not None or name == "payload"}

    @classmethod
    def from_json(cls, arguments: dict[str, Any], accepted_at: datetime) -> ReplayPlan:
        """The plan of a command's ``arguments``; a command accepted before plans were
        stored (its overrides as the trigger's camelCase options) is read as well, so one
        left pending across an upgrade still applies."""
        data = arguments.get("plan")
        if data is None:
            return _previous_plan(arguments, accepted_at)
        key = data.get("key")
        return cls(
            option_changes=dict(data.get("option_changes") or {}),
            ttl_seconds=data.get("ttl_seconds"),
            due=parse_datetime(data["due"]) if data.get("due") else None,
            payload=data.get("payload"),
            payload_type=data.get("payload_type"),
            key=KeyPlan(key["key"], key["hash"], parse_datetime(key["expires_at"]))
            if key else None,
            checkpoint=data.get("checkpoint"),
            from_step=data.get("from_step"),
            step_position=data.get("step_position"),
        )


@dataclass(frozen=True)
class AcceptedReplay:
    target_environment_id: str
    plan: ReplayPlan


def changes_of(body: ReplayRequest, now: datetime) -> ReplayPlan:
    """The run options, TTL and delay a body changes (raises DurationError)."""
    changes: dict[str, Any] = {}
    if body.tags is not None:
        changes["tags"] = sorted(set([body.tags] if isinstance(body.tags, str) else body.tags))
    for name in ("metadata", "max_attempts", "max_duration", "priority", "concurrency_key"):
        if getattr(body, name) is not None:
            changes[name] = getattr(body, name)
    if body.queue is not None:
        changes["queue"] = queue_name(body.queue)
    if body.machine is not None:
        changes["machine"] = machine_name(body.machine)
    if body.version is not None:
        changes["lock_to_version"] = body.version
    due = parse_delay(body.delay, now, REPLAY_DELAY) if body.delay is not None else None
    return ReplayPlan(changes, parse_ttl(body.ttl), due)


def _target_environment(session: Session, auth: AuthContext, name: str | None) -> str:
    if name is None or name in (auth.environment_slug, auth.environment_id):
        return auth.environment_id
    if name in ENVIRONMENT_SLUGS:
        env = projects_repo.get_environment(session, auth.project_id, name)
    else:
        env = projects_repo.get_environment_by_id(session, name)
    if env is None or env.project_id != auth.project_id:
        raise EnvironmentNotFound()
    return env.id


def validate_replay(
    session: Session,
    auth: AuthContext,
    source_id: str,
    task_identifier: str,
    task_known: bool,
    body: ReplayRequest,
    checkpoint: int | None,
    now: datetime,
) -> AcceptedReplay:
    """Check that the replay can be created; returns its plan, for the command to record.

    ``task_known``: whether any version of the project registers the run's task.
    """
    reject_unstorable(body.model_dump(by_alias=True, exclude_none=True), "body")
    check_metadata_size(body.metadata)
    target_env = _target_environment(session, auth, body.environment)
    if checkpoint is not None and attempts_repo.get_checkpoint(session, source_id, checkpoint) is None:
        raise CheckpointNotFound(source_id, checkpoint)
    step: dict[str, Any] = {}
    if body.from_step is not None:
        if checkpoint is not None:
            raise ReplayFailed("a replay starts from a checkpoint or from a step, not both",
                               "fromStep")
        try:
            position = durable.step_position(session, source_id, body.from_step)
        except RepriseError as exc:
            raise ReplayFailed(exc.message, "fromStep") from None
        step = {"from_step": body.from_step, "step_position": position}
    # A value of the body that cannot be used is refused naming its field.
    at = "delay"
    try:
        if body.delay is not None:
            parse_delay(body.delay, now, REPLAY_DELAY)
        at = "ttl"
        plan = changes_of(body, now)
    except DurationError as exc:
        raise ReplayFailed(str(exc), at) from None
    payload: dict[str, Any] = {}
    key = None
    try:
        if body.overrides_payload:
            at = "payloadType"
            if body.payload_type not in (None, JSON, SUPERJSON, TEXT):
                raise ReplayFailed(f"{body.payload_type!r} cannot be replayed", at)
            # The SDK sends a superjson string with its type: store the value it encodes.
            at = "payload"
            payload["payload"], payload["payload_type"] = decode_payload(
                body.payload, body.payload_type
            )
        if body.version is not None:
            at = "version"
            locked_task_defaults(session, target_env, task_identifier, body.version)
        at = "idempotencyKeyTTL"
        if body.idempotency_key:
            key = KeyPlan(body.idempotency_key, idempotency.hash_key(body.idempotency_key),
                          idempotency.key_expiry(now, body.idempotency_key_ttl))
        elif body.idempotency_key_ttl is not None:
            raise ReplayFailed("needs an idempotencyKey", at)
    except ReplayFailed:
        raise
    except RepriseError as exc:
        raise ReplayFailed(exc.message, at) from None
    if not task_known:
        raise ReplayFailed("no version of this project registers the run's task")
    return AcceptedReplay(
        target_env, replace(plan, **payload, **step, key=key, checkpoint=checkpoint)
    )


def _previous_plan(arguments: dict[str, Any], accepted_at: datetime) -> ReplayPlan:
    """The plan of a command the previous code accepted: ``overrides`` keyed as the
    trigger's options, its delay already a date and its key already hashed."""
    overrides = dict(arguments.get("overrides") or {})
    payload = {"payload": overrides.pop("payload", None),
               "payload_type": overrides.pop("payloadType", JSON)} if "payload" in overrides else {}
    key = None
    if overrides.get("idempotencyKeyHash"):
        key = KeyPlan(overrides.pop("idempotencyKey"), overrides.pop("idempotencyKeyHash"),
                      parse_datetime(overrides.pop("idempotencyKeyExpiresAt")))
    if "lockToVersion" in overrides:
        overrides["version"] = overrides.pop("lockToVersion")
    # Its queue was accepted as the trigger's (``{name}``, before queue names were checked):
    # kept as it was, not refused now.
    queue = queue_name(overrides.pop("queue")) if "queue" in overrides else None
    plan = changes_of(ReplayRequest.model_validate(overrides), accepted_at)
    if queue is not None:
        plan = replace(plan, option_changes={**plan.option_changes, "queue": queue})
    return replace(plan, **payload, key=key, checkpoint=arguments.get("checkpoint"))


def new_run_of(
    session: Session, plan: ReplayPlan, source: Run, run_id: str, environment_id: str
) -> NewRun:
    """The run ``run_id`` a replay of ``source`` into ``environment_id`` creates (raises
    ReplayFailed if it cannot be built)."""
    payload: Any = source.payload
    payload_type = source.payload_type
    if payload_type == STORE and environment_id != source.environment_id:
        # Packets belong to their environment: the replay elsewhere carries the value.
        payload, payload_type = run_payload(session, source), JSON
    if plan.payload_type is not None:
        payload, payload_type = plan.payload, plan.payload_type
    debug_mode = False
    resumed_from: dict[str, Any] | None = None
    if plan.checkpoint is not None:
        saved = attempts_repo.get_checkpoint(session, source.id, plan.checkpoint)
        if saved is None:
            raise ReplayFailed(f"checkpoint {plan.checkpoint} of {source.id} no longer exists")
        payload, payload_type, debug_mode = saved.state, JSON, True
        resumed_from = {"checkpoint": plan.checkpoint}
    if plan.step_position is not None:
        resumed_from = {"step": plan.from_step, "position": plan.step_position}
    changes = plan.option_changes
    if plan.ttl_seconds is not None:
        changes = {**changes, "ttl": plan.ttl_seconds}
    return NewRun(
        task_identifier=source.task_identifier,
        payload=payload,
        payload_type=payload_type,
        options=RunOptions.from_run(source).with_overrides(changes),
        delay=plan.due,
        run_id=run_id,
        idempotency_key=plan.key.key if plan.key else None,
        idempotency_key_hash=plan.key.hash if plan.key else None,
        idempotency_key_expires_at=plan.key.expires_at if plan.key else None,
        replayed_from=source.id,
        lineage_depth=source.lineage_depth + 1,
        debug_mode=debug_mode,
        triggered_by="replay",
        resumed_from=resumed_from,
    )


def apply_replay(session: Session, locked: LockedCommand, applier: str) -> dict[str, Any]:
    """Create the new run of a replay command (the run it replays and the target
    environment were loaded with the command); returns the command's result."""
    command, source, env = locked
    if source is None:
        raise ReplayFailed(f"the run {command.run_id} no longer exists")
    if env is None:
        raise ReplayFailed("the target environment no longer exists")
    plan = ReplayPlan.from_json(command.arguments, command.created_at)
    assert command.target_run_id is not None  # a replay's new run id is chosen at accept
    spec = new_run_of(session, plan, source, command.target_run_id, env.id)
    run = create_run(session, env.project_id, env.id, spec)
    if plan.step_position is not None:
        # The record before the step is the new run's: answered, never done again.
        durable.copy_record(session, source.id, run.id, plan.step_position)
    return {"runId": run.id, "status": run.status}


register_applier(CommandKind.REPLAY, apply_replay)
