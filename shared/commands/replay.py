"""Replay (§5): what a replay copies from the original, what the body overrides, and the
checks made at accept time so that an accepted replay can be created when applied.

What a replay copies from the original is :meth:`shared.runs.options.RunOptions.from_run`
(plus the payload and its type); what its body may override is
:meth:`~shared.runs.options.RunOptions.with_overrides` (plus payload and delay).

The new run is created when the command is applied, against the latest version of the
task in the target environment (PENDING_VERSION if that version lacks the task), with
``replayedFrom`` = the original and ``lineageDepth`` = the original's + 1.

Decisions where the spec is silent:

* ``environment`` in the body is a slug (``dev``/``staging``/``prod``) or an environment
  id; it must belong to the caller's project, else 404 "Environment not found" (another
  project's environment is invisible, like another environment's run).
* A body that is not a JSON object, or whose fields have the wrong type or range, is
  400 "Invalid request body". Values of the right type that cannot make a run (an
  unparsable ``ttl`` or ``delay``, a task no version of the project registers) are
  400 "Failed to create new run".
* A duration ``delay`` is measured from the accept, not from the apply.
* ``from_checkpoint`` (Strait): the payload is that checkpoint's saved state (type
  ``application/json``) and the new run has ``debug_mode`` on.
* Every field of the SDK's ``ReplayRunRequestBody`` is honoured: ``payload`` with its
  ``payloadType`` (a superjson string is decoded as a trigger's is), ``concurrencyKey``,
  ``machine``, ``maxDuration``, ``version`` (a lock, checked at accept: 400 naming an
  unknown version), ``idempotencyKey`` (+ ``idempotencyKeyTTL``: a replay with a key that a
  live run of the task holds answers that run, so two replays with one key make one run);
  ``region`` is refused (one region).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from reprise_server.shared.commands.errors import (
    CheckpointNotFound,
    EnvironmentNotFound,
    ReplayFailed,
)
from reprise_server.shared.commands.models import Command
from reprise_server.shared.commands.schemas import ReplayRequest
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
from reprise_server.shared.payloads import JSON, STORE, SUPERJSON, TEXT, decode_payload, reject_nul
from reprise_server.shared.projects import repository as projects_repo
from reprise_server.shared.projects.models import ENVIRONMENT_SLUGS, Environment
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import attempts_repository as attempts_repo
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.options import RunOptions
from reprise_server.shared.runs.service import (
    NewRun,
    create_run,
    idempotency_key_expiry,
    idempotency_key_hash,
    locked_task_defaults,
)

# Replay (§5): like a trigger's — a number is seconds, a date already past runs at once —
# except that a duration counts from the accept, so the command records the date.
REPLAY_DELAY = DelayPolicy(numbers=True, past="now")


@dataclass(frozen=True)
class AcceptedReplay:
    target_environment_id: str
    arguments: dict[str, Any]


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
    """Check that the replay can be created; returns what the command records.

    ``task_known``: whether any version of the project registers the run's task.
    """
    reject_nul(body.model_dump(by_alias=True, exclude_none=True), "body")
    target_env = _target_environment(session, auth, body.environment)
    if checkpoint is not None and attempts_repo.get_checkpoint(session, source_id, checkpoint) is None:
        raise CheckpointNotFound(source_id, checkpoint)
    overrides = body.overrides()
    try:
        parse_ttl(overrides.get("ttl"))
        if overrides.get("delay") is not None:
            overrides["delay"] = iso(parse_delay(overrides["delay"], now, REPLAY_DELAY))
    except DurationError as exc:
        raise ReplayFailed(str(exc)) from None
    try:
        if body.overrides_payload:
            if body.payload_type not in (None, JSON, SUPERJSON, TEXT):
                raise ReplayFailed(f"payloadType {body.payload_type!r} cannot be replayed")
            # The SDK sends a superjson string with its type: store the value it encodes.
            overrides["payload"], overrides["payloadType"] = decode_payload(
                body.payload, body.payload_type
            )
        if body.version is not None:
            locked_task_defaults(session, target_env, task_identifier, body.version)
        if body.idempotency_key:
            overrides["idempotencyKey"] = body.idempotency_key
            overrides["idempotencyKeyHash"] = idempotency_key_hash(body.idempotency_key)
            overrides["idempotencyKeyExpiresAt"] = iso(
                idempotency_key_expiry(session, body.idempotency_key_ttl)
            )
        elif body.idempotency_key_ttl is not None:
            raise ReplayFailed("idempotencyKeyTTL needs an idempotencyKey")
    except ReplayFailed:
        raise
    except RepriseError as exc:
        raise ReplayFailed(exc.message) from None
    if not task_known:
        raise ReplayFailed("no version of this project registers the run's task")
    arguments: dict[str, Any] = {"overrides": overrides} if overrides else {}
    if checkpoint is not None:
        arguments["checkpoint"] = checkpoint
    return AcceptedReplay(target_env, arguments)


def new_run_of(session: Session, command: Command, source: Run) -> NewRun:
    """The run a replay command creates (raises ReplayFailed if it cannot be built)."""
    overrides: dict[str, Any] = dict(command.arguments.get("overrides") or {})
    payload: Any = source.payload
    payload_type = source.payload_type
    if payload_type == STORE and command.target_environment_id != source.environment_id:
        # Packets belong to their environment: the replay elsewhere carries the value.
        payload, payload_type = run_payload(session, source), JSON
    if "payload" in overrides:
        payload, payload_type = overrides["payload"], overrides.get("payloadType", JSON)
    debug_mode = False
    number = command.arguments.get("checkpoint")
    if number is not None:
        saved = attempts_repo.get_checkpoint(session, source.id, int(number))
        if saved is None:
            raise ReplayFailed(f"checkpoint {number} of {source.id} no longer exists")
        payload, payload_type, debug_mode = saved.state, JSON, True
    try:
        options = RunOptions.from_run(source).with_overrides(overrides)
    except ValidationError as exc:
        raise ReplayFailed(str(exc)) from None
    return NewRun(
        task_identifier=source.task_identifier,
        payload=payload,
        payload_type=payload_type,
        options=options,
        delay=overrides.get("delay"),
        run_id=command.target_run_id,
        idempotency_key=overrides.get("idempotencyKey"),
        idempotency_key_hash=overrides.get("idempotencyKeyHash"),
        idempotency_key_expires_at=(
            parse_datetime(overrides["idempotencyKeyExpiresAt"])
            if overrides.get("idempotencyKeyExpiresAt") else None
        ),
        replayed_from=source.id,
        lineage_depth=source.lineage_depth + 1,
        debug_mode=debug_mode,
        triggered_by="replay",
    )


def apply_replay(
    session: Session, command: Command, source: Run | None, env: Environment | None
) -> dict[str, Any]:
    """Create the new run of a replay command (``source`` is the run it replays, ``env``
    the target environment, both loaded with the command); returns the command's result."""
    if source is None:
        raise ReplayFailed(f"the run {command.run_id} no longer exists")
    if env is None:
        raise ReplayFailed("the target environment no longer exists")
    run = create_run(session, env.project_id, env.id, new_run_of(session, command, source))
    return {"runId": run.id, "status": run.status}
