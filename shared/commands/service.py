"""Replay and reschedule as durable commands: accept (the outbox row, written in the
request's transaction and published after commit), apply (idempotent by command id, through
the kind's applier in :mod:`shared.commands.appliers`), and the reads' inline apply.

Why it is exactly once, how a reschedule is decided in the request, and how a read sees
its own replay: docs/architecture.md#commands, #exactly-once-apply,
#linearizable-reschedule and #read-your-writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from reprise_server.shared import broker, idempotency
from reprise_server.shared.access.repository import RunHead
from reprise_server.shared.commands import replay
from reprise_server.shared.commands import repository as repo
from reprise_server.shared.commands.appliers import LockedCommand, applier_of
from reprise_server.shared.commands.errors import CommandNotFound, ReplayFailed, RunNotDelayed
from reprise_server.shared.commands.models import Command, CommandKind, CommandStatus
from reprise_server.shared.commands.publisher import PUBLISHER
from reprise_server.shared.commands.reschedule import move_delayed_run, requested_move, result_of
from reprise_server.shared.commands.schemas import ReplayRequest
from reprise_server.shared.db import after_commit_scope, on_commit
from reprise_server.shared.durations import DurationError
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.idempotency import Answer
from reprise_server.shared.ids import new_command_id, new_run_id
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import repository as runs_repo
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.service import existing_by_idempotency_key
from reprise_server.shared.runs.states import RunStatus
from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.commands")

# Reads apply at most this many pending commands of an environment inline before a list.
LIST_APPLY_LIMIT = 100


@dataclass(frozen=True)
class Accepted:
    """An accepted command: its id, and the run its effect lands on (a replay's new run).
    A replay whose idempotency key a live run holds records no command: ``id`` is None and
    ``target_run_id`` is that run (``is_cached``)."""

    id: str | None
    target_run_id: str
    is_cached: bool = False


def accept_replay(
    session: Session,
    auth: AuthContext,
    run: RunHead,
    body: ReplayRequest,
    *,
    checkpoint: int | None = None,
    publish: bool = True,
    request_key: str | None = None,
) -> Accepted:
    """Record a replay of ``run`` (a run of the caller's environment) for ``auth``.

    ``publish=False`` is for callers that apply the command in the same transaction. A
    retried request (same ``x-trigger-request-idempotency-key``, within the window of
    :mod:`shared.idempotency`) gets the replay it already caused, not a second one.
    """
    request_key = idempotency.request_key(request_key)
    retry = request_key and idempotency.retry_of(
        repo.replay_by_request_key(session, auth.environment_id, run.run_id, request_key),
        lambda: run.now,
    )
    if retry:
        return Accepted(retry.row.id, str(retry.row.target_run_id))
    try:
        accepted = replay.validate_replay(
            session, auth, run.run_id, run.task_identifier, run.task_known, body, checkpoint,
            run.now,
        )
    except ReplayFailed as exc:
        log.info("replay of %s refused: %s", run.run_id, exc.detail)
        raise
    row = _replay_row(auth, run, body, accepted, request_key)
    key = accepted.plan.key
    if key is None:
        repo.insert_command(session, {**row, "publish_count": int(publish)}, published=publish)
        if publish:
            on_commit(session, lambda: PUBLISHER.submit(row["id"]))
        return Accepted(row["id"], row["target_run_id"])
    # Applied in this request, so the runs' unique key index decides between two
    # concurrent replays with one key (a pending command could not).
    def holder() -> Answer[str] | None:
        held = existing_by_idempotency_key(
            session, accepted.target_environment_id, run.task_identifier, key.hash)
        return idempotency.holder(held.id if held else None)

    answer = idempotency.insert_or_winner(lambda: _record_and_apply(session, row), [holder])
    if answer.new:
        return Accepted(row["id"], row["target_run_id"])
    if answer.raced and (found := repo.lock_command_for_apply(session, row["id"])) is not None:
        _reject(session, found.command, "api", f"idempotency key taken by {answer.row}")
    return Accepted(None, answer.row, is_cached=True)


# What a replay's command shows of its request (GET /api/v1/commands/{id}): the overrides
# as the caller sent them; the environment and idempotency key show in the new run.
_NOT_SHOWN = frozenset({"environment", "idempotency_key", "idempotency_key_ttl"})


def _replay_row(
    auth: AuthContext,
    run: RunHead,
    body: ReplayRequest,
    accepted: replay.AcceptedReplay,
    request_key: str | None,
) -> dict[str, Any]:
    """The command row: ``arguments`` holds the plan apply reads (``plan``, never shown on
    the wire) beside the request's overrides and checkpoint, as the API shows them."""
    overrides = body.model_dump(mode="json", by_alias=True, exclude_unset=True,
                                exclude=set(_NOT_SHOWN))
    arguments: dict[str, Any] = {"overrides": overrides, "plan": accepted.plan.to_json()}
    if accepted.plan.checkpoint is not None:
        arguments["checkpoint"] = accepted.plan.checkpoint
    if request_key:
        arguments["requestKey"] = request_key
    return {
        "id": new_command_id(), "kind": CommandKind.REPLAY.value,
        "status": CommandStatus.PENDING.value, "environment_id": auth.environment_id,
        "run_id": run.run_id, "target_run_id": new_run_id(),
        "target_environment_id": accepted.target_environment_id, "arguments": arguments,
    }


def _record_and_apply(session: Session, row: dict[str, Any]) -> str:
    """Write the command and apply it at once; raises KeyTaken when a concurrent replay
    took its idempotency key (the command is left pending, for the caller to reject)."""
    repo.insert_command(session, {**row, "publish_count": 0}, published=False)
    apply_command(session, row["id"], "api")
    return str(row["target_run_id"])


def replay_now(
    session: Session, auth: AuthContext, run: RunHead, *, checkpoint: int | None, applier: str
) -> Run:
    """Replay ``run`` and apply the command in the same transaction; returns the new run
    (Strait's replay answers with it). Raises ReplayFailed if it could not be created."""
    accepted = accept_replay(session, auth, run, ReplayRequest(), checkpoint=checkpoint,
                             publish=False)
    applied = apply_command(session, accepted.id, applier) if accepted.id else None
    new_run = runs_repo.get_run(session, None, accepted.target_run_id)
    if new_run is None:
        raise ReplayFailed(applied.reason if applied and applied.reason else "not created")
    return new_run


def accept_reschedule(
    session: Session, auth: AuthContext, run: RunHead, delay: str, applier: str
) -> Run:
    """Move a DELAYED run to ``delay`` now, in the request's transaction, and record the
    command as applied. ``run`` must have been read with its row locked
    (docs/architecture.md#linearizable-reschedule)."""
    if not run.locked:
        raise ValueError("a reschedule needs the run's row lock (find it with lock=True)")
    if run.status != RunStatus.DELAYED.value:
        raise RunNotDelayed()
    due = requested_move(delay, run.now)
    moved = move_delayed_run(session, run.run_id, due, run.now)
    result = result_of(moved)
    repo.insert_command(
        session,
        {
            "id": new_command_id(),
            "kind": CommandKind.RESCHEDULE.value,
            "status": CommandStatus.APPLIED.value,
            "environment_id": auth.environment_id,
            "run_id": run.run_id,
            "target_run_id": run.run_id,
            "target_environment_id": auth.environment_id,
            "arguments": {"delay": delay, "delayedUntil": result["delayedUntil"]},
            "result": result,
            "publish_count": 0,
            "applied_at": run.now,
            "applied_by": applier,
        },
        published=False,
    )
    return moved


def apply_command(session: Session, command_id: str, applier: str) -> Command | None:
    """Apply a pending command once; a command already decided is left as it is.

    Returns the command with its outcome, or None if there is no such command.
    """
    found = repo.lock_command_for_apply(session, command_id)
    if found is None:
        return None
    if found.command.status != CommandStatus.PENDING.value:
        return found.command
    status, result, reason = _decide(session, found, applier)
    return repo.record_outcome(session, found.command, status, applier, result=result,
                               reason=reason)


def apply_commands(session: Session, command_ids: list[str], applier: str) -> list[str]:
    """Apply the pending ones of ``command_ids`` in the caller's transaction, as many
    commands in one: one round trip locks them all with their sources, one records their
    outcomes, one commit decides them all. Returns the ids this left alone because another
    transaction held them; the caller applies those one by one (:func:`apply_command`
    waits for the holder, then does nothing if it decided them).

    Each command is decided as :func:`apply_command` decides it; a database error aborts
    the whole transaction, so the caller retries or applies them one by one.
    """
    found = repo.lock_pending_commands(session, command_ids)
    with catalogue.contexts_shared(session):
        outcomes = [(locked.command.id, *_decide(session, locked, applier)) for locked in found]
    if outcomes:
        repo.record_outcomes(session, outcomes, applier)
    taken = {locked.command.id for locked in found}
    rest = [command_id for command_id in command_ids if command_id not in taken]
    # Skipped: the decided ones (a redelivered message) and those held elsewhere.
    return repo.still_pending(session, rest) if rest else []


Outcome = tuple[CommandStatus, dict[str, Any] | None, str | None]


def _decide(session: Session, found: LockedCommand, applier: str) -> Outcome:
    """Apply a locked pending command's effect; its outcome (status, result, reason), for
    the caller to record."""
    command = found.command
    apply = applier_of(command.kind)
    if apply is None:
        return _rejected(command, f"unknown command kind {command.kind!r}")
    try:
        # Appliers validate before writing, so a rejection has no partial effect to undo;
        # the scope drops any publish a half-built effect registered.
        with after_commit_scope(session):
            result = apply(session, found, applier)
    except (RepriseError, ValidationError, DurationError) as exc:
        reason = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
        return _rejected(command, str(reason))
    return CommandStatus.APPLIED, result, None


def _rejected(command: Command, reason: str) -> Outcome:
    log.info("command %s rejected: %s", command.id, reason)
    return CommandStatus.REJECTED, None, reason


def _reject(session: Session, command: Command, applier: str, reason: str) -> Command:
    status, _, why = _rejected(command, reason)
    return repo.record_outcome(session, command, status, applier, reason=why)


def apply_pending(
    session: Session,
    environment_id: str,
    applier: str,
    *,
    run_id: str | None = None,
    limit: int = LIST_APPLY_LIMIT,
) -> int:
    """Read-your-writes: apply inline the oldest pending commands whose effect lands in the
    environment (on ``run_id`` only, if given). Scoped to the reader's environment, so a
    caller only ever applies commands whose effect it may see.

    Bounded: with more than ``limit`` pending (workers far behind), a list may not show
    the newest replays until workers catch up.
    """
    ids = repo.pending_commands(session, environment_id, run_id=run_id, limit=limit)
    for command_id in ids:
        apply_command(session, command_id, applier)
    return len(ids)


def relay_pending_commands(
    session: Session, batch_size: int = 1000, *, queued_messages: int = 0
) -> int:
    """Republish commands pending longer than ``command_relay_after_seconds`` whose
    message may really be lost; returns how many.

    ``queued_messages``: command messages the broker holds right now. While it holds any,
    pending commands are a backlog being worked through, not lost messages: republishing
    them would only queue every one of them again (and again each interval). A message
    lost meanwhile (a failed publish) waits until that queue has drained; one lost with
    the broker's data (FLUSHALL) finds the queue empty and is republished at the next
    sweep.
    """
    if queued_messages:
        return 0
    quiet = timedelta(seconds=get_settings().command_relay_after_seconds)
    ids = repo.claim_for_relay(session, quiet, batch_size)
    if ids:
        on_commit(session, lambda: broker.publish_commands(ids))
    return len(ids)


def get_command_for(session: Session, auth: AuthContext, command_id: str) -> Command:
    command = repo.visible_command(session, auth.environment_id, command_id)
    if command is None:
        raise CommandNotFound()
    return command
