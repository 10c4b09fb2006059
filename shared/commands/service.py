"""Replay and reschedule as durable commands (§2).

Accept (API): validate, write the command row in the request's transaction (the outbox)
and, after commit, publish ``reprise.apply_command(command_id)`` (from a background
thread: :mod:`shared.commands.publisher`). The caller's key, its environment and the run
are looked up in one query on the happy path. Apply (worker, or a read applying it
inline): :func:`apply_command`, idempotent by command id. A relay sweep republishes
commands left pending longer than ``command_relay_after_seconds`` (Redis lost the
message, publishing failed, or the API process died before publishing).

**Exactly once in effect.** :func:`apply_command` locks the command row ``FOR UPDATE`` and
does nothing unless it is still PENDING; the effect (the new run of a replay) and the
outcome (APPLIED with its result, or REJECTED with a reason) are written in the caller's
one transaction. A redelivered message, a second worker, or a read applying the command
inline either waits for the first applier's commit and then sees the outcome, or finds
the command pending because the first applier died before committing (its transaction
rolled back: nothing to undo). Appliers validate before they write, so a rejection leaves
no partial effect.

**Reschedule is decided in the request (§2.3).** The accept locks the run row
(``SELECT … FOR UPDATE``). A promotion (timer or due-sweep) is a compare-and-set on the
same row, so the two are serialised by Postgres: if the promotion committed first the run
is no longer DELAYED and the reschedule is 400 "Cannot reschedule a run that is not
delayed"; otherwise the reschedule moves ``delayedUntil`` and bumps the schedule token in
the request's transaction, so the old timer's token is stale and the sweep no longer sees
the run as due. The command row is recorded APPLIED in that same transaction (the run's
history and ``GET /api/v1/commands/{id}`` show it) and nothing is published: a 200 is only
returned once the move has really happened, which also gives read-your-writes for free.
Applying a reschedule command through :func:`apply_command` (none are left pending by the
API) uses the same move and is rejected if the run is not DELAYED any more.

**Read-your-writes (§2.2).** A replay returns the new run's id, chosen at accept time
(``commands.target_run_id``). Reads of a run call :func:`apply_pending_for_run` and lists
call :func:`apply_pending_for_environment` first, applying pending commands inline with
the same function the worker uses.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from pydantic import ValidationError
from sqlalchemy.orm import Session

from shared import broker
from shared.commands import replay
from shared.commands import repository as repo
from shared.commands.errors import CommandNotFound, ReplayFailed, RunNotDelayed
from shared.commands.models import Command, CommandKind, CommandStatus
from shared.commands.publisher import PUBLISHER
from shared.commands.reschedule import move_delayed_run, resolve_new_time, result_of
from shared.commands.schemas import ReplayRequest
from shared.db import db_now, on_commit
from shared.durations import DurationError, parse_datetime
from shared.errors import InvalidRunId, RepriseError, RunNotFound, Unauthorized
from shared.ids import is_run_id, new_command_id, new_run_id
from shared.projects.models import KEY_PREFIXES
from shared.projects.service import AuthContext, authenticate, hash_key
from shared.runs import repository as runs_repo
from shared.runs.models import Run
from shared.runs.service import get_run_for
from shared.runs.states import RunStatus
from shared.settings import get_settings

log = logging.getLogger("reprise.commands")

# Reads apply at most this many pending commands of an environment inline before a list.
LIST_APPLY_LIMIT = 100


@lru_cache(maxsize=1)
def _api_applier(pid: int) -> str:
    return f"api:{socket.gethostname()}:{pid}"


def api_applier() -> str:
    """The ``applied_by`` of commands applied by an API process (per pid: uvicorn forks)."""
    return _api_applier(os.getpid())


@dataclass(frozen=True)
class Accepted:
    """An accepted command: its id, and the run its effect lands on (a replay's new run)."""

    id: str
    target_run_id: str
    auth: AuthContext


def _caller_and_run(
    session: Session, secret: str | None, run_id: str, *, lock: bool = False
) -> tuple[AuthContext, repo.CallerRun]:
    """The caller and the run, in one round trip on the happy path.

    Errors keep the order of §4: a wrong key (401) before a malformed id (400) before an
    unknown or foreign run (404); the key is looked up on its own only on those paths.
    """
    if not secret or not secret.startswith(tuple(KEY_PREFIXES.values())):
        raise Unauthorized()
    if not run_id or not is_run_id(run_id):
        authenticate(session, secret)
        raise InvalidRunId()
    found = repo.find_caller_and_run(session, hash_key(secret), run_id, lock=lock)
    if found is None:
        authenticate(session, secret)
        raise RunNotFound()
    return AuthContext(found.project_id, found.environment_id, found.environment_slug), found


def accept_replay(
    session: Session,
    secret: str | None,
    run_id: str,
    body: ReplayRequest,
    *,
    checkpoint: int | None = None,
    publish: bool = True,
    request_key: str | None = None,
) -> Accepted:
    """Record a replay of ``run_id`` for the caller holding ``secret``.

    ``publish=False`` is for callers that apply the command in the same transaction.
    A client retrying with the same ``x-trigger-request-idempotency-key`` (as the official
    SDK does when a response is lost) gets the replay it already caused, not a second one.
    """
    auth, source = _caller_and_run(session, secret, run_id)
    if request_key:
        request_key = request_key[:128]
        window = timedelta(hours=get_settings().request_idempotency_hours)
        earlier = repo.replay_by_request_key(
            session, auth.environment_id, source.run_id, request_key, window
        )
        if earlier is not None:
            return Accepted(earlier[0], earlier[1], auth)
    try:
        accepted = replay.validate_replay(
            session, auth, source.run_id, source.task_known, body, checkpoint, source.now
        )
    except ReplayFailed as exc:
        log.info("replay of %s refused: %s", run_id, exc.detail)
        raise
    command_id, target_run_id = new_command_id(), new_run_id()
    repo.insert_command(
        session,
        {
            "id": command_id,
            "kind": CommandKind.REPLAY.value,
            "status": CommandStatus.PENDING.value,
            "environment_id": auth.environment_id,
            "run_id": source.run_id,
            "target_run_id": target_run_id,
            "target_environment_id": accepted.target_environment_id,
            "arguments": (
                {**accepted.arguments, "requestKey": request_key}
                if request_key
                else accepted.arguments
            ),
            "publish_count": 1 if publish else 0,
        },
        published=publish,
    )
    if publish:
        on_commit(session, lambda: PUBLISHER.submit(command_id))
    return Accepted(command_id, target_run_id, auth)


def accept_reschedule(
    session: Session, secret: str | None, run_id: str, delay: str, applier: str
) -> Run:
    """Move a DELAYED run now, in the request's transaction, and record the command."""
    auth, target = _caller_and_run(session, secret, run_id, lock=True)
    if target.status != RunStatus.DELAYED.value:
        raise RunNotDelayed()
    due = resolve_new_time(delay, target.now)
    moved = move_delayed_run(session, target.run_id, due, target.now)
    result = result_of(moved)
    repo.insert_command(
        session,
        {
            "id": new_command_id(),
            "kind": CommandKind.RESCHEDULE.value,
            "status": CommandStatus.APPLIED.value,
            "environment_id": auth.environment_id,
            "run_id": target.run_id,
            "target_run_id": target.run_id,
            "target_environment_id": auth.environment_id,
            "arguments": {"delay": delay, "delayedUntil": result["delayedUntil"]},
            "result": result,
            "publish_count": 0,
            "applied_at": target.now,
            "applied_by": applier,
        },
        published=False,
    )
    return moved


def _apply_reschedule(session: Session, command: Command) -> dict[str, object]:
    target = command.target_run_id or command.run_id
    run = runs_repo.lock_run(session, target)
    if run is None or run.status != RunStatus.DELAYED.value:
        raise RunNotDelayed()
    due = parse_datetime(str(command.arguments["delayedUntil"]))
    moved = move_delayed_run(session, run.id, due, db_now(session))
    return result_of(moved)


def apply_command(session: Session, command_id: str, applier: str) -> Command | None:
    """Apply a pending command once; a command already decided is left as it is.

    Returns the command with its outcome, or None if there is no such command.
    """
    found = repo.lock_command_for_apply(session, command_id)
    if found is None:
        return None
    command, source, env = found
    if command.status != CommandStatus.PENDING.value:
        return command
    callbacks = session.info.setdefault("after_commit", [])
    registered = len(callbacks)
    try:
        if command.kind == CommandKind.REPLAY.value:
            result = replay.apply_replay(session, command, source, env)
        elif command.kind == CommandKind.RESCHEDULE.value:
            result = _apply_reschedule(session, command)
        else:
            raise ReplayFailed(f"unknown command kind {command.kind!r}")
    except (RepriseError, ValidationError, DurationError) as exc:
        # Appliers validate before writing, so there is no partial effect to undo; drop
        # any publish a half-built effect registered.
        del callbacks[registered:]
        reason = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        log.info("command %s rejected: %s", command_id, reason)
        return repo.record_outcome(
            session, command, CommandStatus.REJECTED, applier, reason=str(reason)
        )
    return repo.record_outcome(session, command, CommandStatus.APPLIED, applier, result=result)


def apply_pending_for_run(session: Session, run_id: str, applier: str) -> int:
    """Read-your-writes for one run: apply its pending commands inline."""
    ids = repo.pending_for_target_run(session, run_id)
    for command_id in ids:
        apply_command(session, command_id, applier)
    return len(ids)


def apply_pending_for_environment(
    session: Session, environment_id: str, applier: str, limit: int = LIST_APPLY_LIMIT
) -> int:
    """Read-your-writes for lists: apply the environment's oldest pending commands inline.

    Bounded: with more than ``limit`` pending (workers far behind), a list may not show
    the newest replays until workers catch up; retrieve of a run is never bounded.
    """
    ids = repo.pending_for_environment(session, environment_id, limit)
    for command_id in ids:
        apply_command(session, command_id, applier)
    return len(ids)


def relay_pending_commands(session: Session, batch_size: int = 1000) -> int:
    """Republish commands pending longer than ``command_relay_after_seconds``."""
    quiet = timedelta(seconds=get_settings().command_relay_after_seconds)
    ids = repo.claim_for_relay(session, quiet, batch_size)
    if ids:

        def republish() -> None:
            for command_id in ids:
                broker.publish_command(command_id)

        on_commit(session, republish)
    return len(ids)


def get_command_for(session: Session, auth: AuthContext, command_id: str) -> Command:
    command = repo.visible_command(session, auth.environment_id, command_id)
    if command is None:
        raise CommandNotFound()
    return command


def history_of(session: Session, auth: AuthContext, run_id: str) -> list[Command]:
    """The commands issued against a run of the caller's environment, oldest first."""
    if not run_id or not is_run_id(run_id):
        raise InvalidRunId()
    apply_pending_for_run(session, run_id, api_applier())
    run = get_run_for(session, auth, run_id)
    return repo.commands_of_run(session, run.id)
