"""Replay (§5): what a replay copies from the original, what the body overrides, and the
checks made at accept time so that an accepted replay can be created when applied.

Copied from the original: payload and its type, tags, trigger-time metadata, ``isTest``,
queue, concurrencyKey, maxAttempts, maxDuration, priority, machine and ttl (the TTL clock
restarts at the new run's own enqueue). Not copied: idempotency keys, delay, version lock,
attempts, output, and the parent/root/batch links (a replay is a new root run).

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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from shared.commands.errors import CheckpointNotFound, EnvironmentNotFound, ReplayFailed
from shared.commands.models import Command
from shared.commands.schemas import ReplayRequest
from shared.durations import DurationError, iso, resolve_delay, resolve_ttl
from shared.errors import RepriseError
from shared.payloads import JSON, check_depth
from shared.projects import repository as projects_repo
from shared.projects.models import ENVIRONMENT_SLUGS, Environment
from shared.projects.service import AuthContext
from shared.runs import repository as runs_repo
from shared.runs.models import Run
from shared.runs.schemas import TriggerOptions
from shared.runs.service import NewRun, create_run


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
    task_known: bool,
    body: ReplayRequest,
    checkpoint: int | None,
    now: datetime,
) -> AcceptedReplay:
    """Check that the replay can be created; returns what the command records.

    ``task_known``: whether any version of the project registers the run's task.
    """
    target_env = _target_environment(session, auth, body.environment)
    if checkpoint is not None and runs_repo.get_checkpoint(session, source_id, checkpoint) is None:
        raise CheckpointNotFound(source_id, checkpoint)
    overrides = body.overrides()
    try:
        resolve_ttl(overrides.get("ttl"))
        if overrides.get("delay") is not None:
            # A duration counts from now (the accept), so the command records the date.
            delay = TriggerOptions.model_validate({"delay": overrides["delay"]}).delay
            overrides["delay"] = iso(resolve_delay(delay, now))
    except (DurationError, ValidationError) as exc:
        raise ReplayFailed(str(exc)) from None
    if body.overrides_payload:
        try:
            check_depth(body.payload)
        except RepriseError as exc:
            raise ReplayFailed(exc.message) from None
    if not task_known:
        raise ReplayFailed("no version of this project registers the run's task")
    arguments: dict[str, Any] = {"overrides": overrides} if overrides else {}
    if checkpoint is not None:
        arguments["checkpoint"] = checkpoint
    return AcceptedReplay(target_env, arguments)


def _options_of(source: Run, overrides: dict[str, Any]) -> TriggerOptions:
    original: dict[str, Any] = {
        "tags": list(source.tags or []),
        "metadata": source.metadata_,
        "test": source.is_test,
        "queue": source.queue,
        "concurrencyKey": source.concurrency_key,
        "maxAttempts": source.max_attempts,
        "maxDuration": source.max_duration_seconds,
        "priority": source.priority,
        "machine": source.machine,
        "ttl": source.ttl_seconds,
    }
    merged = {**original, **{k: v for k, v in overrides.items() if k != "payload"}}
    return TriggerOptions.model_validate({k: v for k, v in merged.items() if v is not None})


def new_run_of(session: Session, command: Command, source: Run) -> NewRun:
    """The run a replay command creates (raises ReplayFailed if it cannot be built)."""
    overrides: dict[str, Any] = dict(command.arguments.get("overrides") or {})
    payload: Any = source.payload
    payload_type = source.payload_type
    if "payload" in overrides:
        payload, payload_type = overrides["payload"], JSON
    debug_mode = False
    number = command.arguments.get("checkpoint")
    if number is not None:
        saved = runs_repo.get_checkpoint(session, source.id, int(number))
        if saved is None:
            raise ReplayFailed(f"checkpoint {number} of {source.id} no longer exists")
        payload, payload_type, debug_mode = saved.state, JSON, True
    try:
        options = _options_of(source, overrides)
    except ValidationError as exc:
        raise ReplayFailed(str(exc)) from None
    return NewRun(
        task_identifier=source.task_identifier,
        payload=payload,
        payload_type=payload_type,
        options=options,
        run_id=command.target_run_id,
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
