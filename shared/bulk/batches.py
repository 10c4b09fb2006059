"""A bulk action is worked through by batch commands, one at a time, on the control process.

A batch is a command of the outbox (kind ``bulk``; this module registers
:func:`apply_batch` as its applier), applied under the command's row lock in one
transaction with everything it does, so a killed control process leaves nothing behind and
no run is acted on twice. Why: docs/architecture.md#bulk-actions.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared import broker
from reprise_server.shared.bulk import repository as repo
from reprise_server.shared.bulk.models import BulkAction, BulkKind, BulkStatus
from reprise_server.shared.bulk.selection import filter_of
from reprise_server.shared.commands import replay
from reprise_server.shared.commands import repository as commands_repo
from reprise_server.shared.commands.appliers import LockedCommand, register_applier
from reprise_server.shared.commands.errors import ReplayFailed
from reprise_server.shared.commands.models import CommandKind, CommandStatus
from reprise_server.shared.commands.schemas import ReplayRequest
from reprise_server.shared.db import after_commit_scope, db_now, on_commit
from reprise_server.shared.durations import iso, parse_datetime
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.ids import new_command_id, new_run_id
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects import repository as projects_repo
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import filters, lifecycle
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.service import create_run
from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.bulk")


def batch_size(bulk: BulkAction) -> int:
    size = get_settings().bulk_batch_size
    rate = bulk.arguments.get("maxPerSecond")
    return max(1, min(size, math.floor(rate))) if rate else size


def enqueue_batch(
    session: Session, bulk: BulkAction, number: int, *, due_in: float = 0.0
) -> str:
    """Write the command of the action's batch ``number`` and publish it after commit
    (``due_in`` seconds from now: a throttled replay's pace)."""
    command_id = new_command_id()
    now = db_now(session)
    commands_repo.insert_command(
        session,
        {
            "id": command_id,
            "kind": CommandKind.BULK.value,
            "status": CommandStatus.PENDING.value,
            "environment_id": bulk.environment_id,
            "run_id": bulk.id,
            "target_run_id": None,
            "target_environment_id": bulk.environment_id,
            "arguments": {"bulkActionId": bulk.id, "batch": number},
            "publish_count": 1,
            "published_at": now + timedelta(seconds=due_in),
        },
        published=False,
    )
    on_commit(session, lambda: broker.publish_command(command_id, countdown=due_in or None))
    return command_id


def apply_batch(session: Session, locked: LockedCommand, applier: str) -> dict[str, Any]:
    """Act on the next batch of the command's bulk action; returns the command's result."""
    command = locked.command
    bulk = repo.lock_bulk_action(session, str(command.arguments.get("bulkActionId")))
    if bulk is None:
        raise ReplayFailed("the bulk action no longer exists")
    if bulk.status != BulkStatus.PENDING.value:
        return {"skipped": bulk.status}
    started = db_now(session)
    size = batch_size(bulk)
    after = (
        (bulk.cursor_created_at, bulk.cursor_run_id)
        if bulk.cursor_created_at is not None and bulk.cursor_run_id is not None
        else None
    )
    # One more than the batch: whether another batch follows.
    runs = filters.list_runs(session, bulk.environment_id, filter_of(bulk.selection),
                               size + 1, after=after)
    finished = len(runs) <= size
    runs = runs[:size]
    # Read before acting: a move expires the session's copy of the run it changed.
    cursor = (runs[-1].created_at, runs[-1].id) if runs else None
    act = _ACTIONS[BulkKind(bulk.kind)]
    items = act(session, bulk, runs, applier, started)
    repo.insert_items(session, items)
    succeeded = sum(1 for item in items if item["succeeded"])
    repo.record_batch(session, bulk.id, succeeded=succeeded, failed=len(items) - succeeded,
                      cursor=cursor, finished=finished)
    number = int(command.arguments.get("batch", 0))
    if not finished:
        rate = bulk.arguments.get("maxPerSecond")
        pace = len(runs) / rate if rate else 0.0
        elapsed = (db_now(session) - started).total_seconds()
        enqueue_batch(session, bulk, number + 1, due_in=max(0.0, pace - elapsed))
    log.info("bulk %s batch %d: %d runs, %d succeeded%s", bulk.id, number, len(runs),
             succeeded, " (done)" if finished else "")
    return {"bulkActionId": bulk.id, "batch": number, "runs": len(runs), "succeeded": succeeded}


def _item(bulk: BulkAction, run_id: str, result_run_id: str | None, reason: str | None = None
          ) -> dict[str, Any]:
    return {"bulk_action_id": bulk.id, "run_id": run_id, "result_run_id": result_run_id,
            "succeeded": result_run_id is not None, "reason": reason}


def _replay_runs(session: Session, bulk: BulkAction, runs: list[Run], applier: str,
                 now: datetime) -> list[dict[str, Any]]:
    """Each run replayed as a single replay would be (same validation, same new run), and
    recorded as an applied replay command in its history, naming the bulk action."""
    env = projects_repo.get_environment_by_id(session, bulk.environment_id)
    if env is None:
        raise ReplayFailed("the environment no longer exists")
    auth = AuthContext(env.project_id, env.id, env.slug)
    known: dict[str, bool] = {}
    items, commands = [], []
    for run in runs:
        if run.task_identifier not in known:
            known[run.task_identifier] = catalogue.task_known_in_project(
                session, env.project_id, run.task_identifier)
        target, command_id = new_run_id(), new_command_id()
        try:
            accepted = replay.validate_replay(session, auth, run.id, run.task_identifier,
                                              known[run.task_identifier], ReplayRequest(), None,
                                              now)
            # No savepoint (it cost a quarter of a batch, profiled): like a single
            # replay's apply, building the run validates everything before its one
            # INSERT, so a refused run has written nothing; a fresh id and no
            # idempotency key mean that INSERT cannot conflict.
            with after_commit_scope(session):
                create_run(session, env.project_id, env.id,
                           replay.new_run_of(session, accepted.plan, run, target, env.id))
        except RepriseError as exc:
            items.append(_item(bulk, run.id, None, getattr(exc, "detail", None) or exc.message))
            continue
        items.append(_item(bulk, run.id, target))
        commands.append({
            "id": command_id, "kind": CommandKind.REPLAY.value,
            "status": CommandStatus.APPLIED.value, "environment_id": env.id,
            "run_id": run.id, "target_run_id": target, "target_environment_id": env.id,
            "arguments": {"bulkActionId": bulk.id}, "result": {"runId": target},
            "publish_count": 0, "applied_at": now, "applied_by": applier[:200],
        })
    if commands:
        commands_repo.insert_commands(session, commands)
    return items


def _cancel_runs(session: Session, bulk: BulkAction, runs: list[Run], applier: str,
                 now: datetime) -> list[dict[str, Any]]:
    """A run that had already finished is a failure, as Trigger.dev counts it."""
    items = []
    for run_id, status in [(run.id, run.status) for run in runs]:
        canceled = lifecycle.cancel(session, run_id)
        items.append(_item(bulk, run_id, run_id if canceled else None,
                           None if canceled else f"already {status}"))
    return items


def _reschedule_runs(session: Session, bulk: BulkAction, runs: list[Run], applier: str,
                     now: datetime) -> list[dict[str, Any]]:
    """Each DELAYED run moved to the action's ``delayedUntil`` (a compare-and-set: a run
    promoted meanwhile is a failure, never moved), recorded as an applied reschedule."""
    due = parse_datetime(str(bulk.arguments["delayedUntil"]))
    items, commands = [], []
    for run_id in [run.id for run in runs]:
        moved = lifecycle.reschedule(session, run_id, due, now)
        if moved is None:
            items.append(_item(bulk, run_id, None, "Cannot reschedule a run that is not delayed"))
            continue
        items.append(_item(bulk, run_id, run_id))
        commands.append({
            "id": new_command_id(), "kind": CommandKind.RESCHEDULE.value,
            "status": CommandStatus.APPLIED.value, "environment_id": bulk.environment_id,
            "run_id": run_id, "target_run_id": run_id,
            "target_environment_id": bulk.environment_id,
            "arguments": {"bulkActionId": bulk.id, "delayedUntil": iso(due)},
            "result": {"delayedUntil": iso(moved.delayed_until),
                       "scheduleToken": moved.schedule_token},
            "publish_count": 0, "applied_at": now, "applied_by": applier[:200],
        })
    if commands:
        commands_repo.insert_commands(session, commands)
    return items


_ACTIONS = {
    BulkKind.REPLAY: _replay_runs,
    BulkKind.CANCEL: _cancel_runs,
    BulkKind.RESCHEDULE: _reschedule_runs,
}


register_applier(CommandKind.BULK, apply_batch)
