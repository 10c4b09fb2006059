"""Durable execution: a run's record of steps and waits, and the waitpoints it waits on.

The model is re-execution with a record (docs/durable.md). An execution asks the record
at each ``ctx.step`` and wait it reaches, in call order (:func:`record_of`, read once per
execution); what is recorded is answered from the record, what is not is done and
recorded (:func:`record_step`, :func:`begin_wait`). A wait that is not over ends the
execution: :func:`suspend` moves the run to WAITING. Completing a waitpoint
(:func:`complete_waitpoint`: a token's completion, a time's timer, a child's end) queues
every run whose wait it ends, in the same transaction.

Locks, in one order everywhere: waitpoints (in id order), then the waiting run's row. A
suspension locks its waitpoints before it moves the run; a completion locks its waitpoint
(the UPDATE) before the runs it finds blocked on it. Blocks are visible to a completion
only once the suspension that wrote them committed; a completion that committed first is
seen by the suspension's lock: no wakeup is lost, none is doubled.

Services take the caller's session and never commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from reprise_server.shared import broker
from reprise_server.shared.db import db_now, on_commit
from reprise_server.shared.durable import waits
from reprise_server.shared.durable.models import RunStep, Waitpoint, WaitpointBlock
from reprise_server.shared.durable.waits import (
    COMPLETED,
    DATETIME,
    FAILED,
    RUN,
    STEP,
    TOKEN,
    WAIT,
    WAITING,
    Entry,
    complete_wait,
    entry_of,
    is_over,
    lock_waitpoints,
    waiting_entry,
)
from reprise_server.shared.errors import InvalidInput, NotFound
from reprise_server.shared.ids import new_id
from reprise_server.shared.packets.service import decoded_packet, load_packet, store_packet
from reprise_server.shared.payloads import JSON, reject_unstorable
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus
from reprise_server.shared.settings import get_settings
from reprise_server.shared.timers.arming import horizon


def complete_waitpoint(
    session: Session, waitpoint_id: str, output: Any = None, *, status: str = COMPLETED,
    is_error: bool = False,
) -> bool:
    """WAITING -> ``status`` (with ``output``), then queue every run whose wait that ends.
    False if it was no longer waiting (completed before: it keeps its first value)."""
    return waits.complete_waitpoint(
        session, waitpoint_id, lifecycle.resume, output, status=status, is_error=is_error,
    )


# --- the record ---------------------------------------------------------------------------


def record_of(session: Session, run_id: str) -> list[Entry]:
    """The run's record in call order (one index range read, however many steps)."""
    rows = session.execute(
        select(RunStep.position, RunStep.kind, RunStep.name, RunStep.status, RunStep.output,
               RunStep.error, RunStep.detail)
        .where(RunStep.run_id == run_id).order_by(RunStep.position)
    ).all()
    return [entry_of(row) for row in rows]


# A step's result at least this large (as JSON) is kept as a packet, as the SDK offloads
# payloads: the record keeps its path (``detail["packet"]``).
OFFLOAD_BYTES = 128 * 1024


def record_step(
    session: Session, run: Run, position: int, name: str, attempt_number: int,
    *, output: Any = None, error: dict[str, Any] | None = None,
) -> Entry:
    """Record a step's result (or error) at ``position``; returns what is recorded there
    (another execution's, had one recorded it first: the record is written once). A large
    result is offloaded to a packet (returned as given)."""
    run_id = run.id
    detail = None
    stored: Any = None  # the result as JSON text, encoded once (here) and cast in SQL
    if error is None:
        reject_unstorable(output, f"the result of step {name!r}")
        try:
            encoded = json.dumps(output)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the result of step {name!r} is not JSON: {exc}") from None
        if len(encoded) >= OFFLOAD_BYTES:
            path = f"steps/{run_id}/{position}.json"
            store_packet(session, run.environment_id, path, encoded.encode(), JSON)
            detail = {"packet": path}
        else:
            stored = cast(literal(encoded, Text), JSONB)
    inserted = session.execute(
        pg_insert(RunStep)
        .values(run_id=run_id, position=position, kind=STEP, name=name,
                status=FAILED if error is not None else COMPLETED,
                output=stored, error=error, detail=detail, attempt_number=attempt_number,
                completed_at=func.now())
        .on_conflict_do_nothing()
        .returning(RunStep.position)
    ).first()
    if inserted is not None:
        return Entry(position, STEP, name, FAILED if error is not None else COMPLETED,
                     output, error)
    return entry_of(session.execute(
        select(RunStep).where(RunStep.run_id == run_id, RunStep.position == position)
    ).scalar_one())


def step_output(session: Session, environment_id: str, entry: Entry) -> Any:
    """A recorded step's result: inline, or read from its packet."""
    path = (entry.detail or {}).get("packet")
    if path is None:
        return entry.output
    return decoded_packet(load_packet(session, environment_id, path))


def forget_failed_steps(session: Session, run_id: str) -> None:
    """A retry runs again the steps whose error it retries (a step's recorded error is
    replayed to a resume, not to a retry)."""
    session.execute(
        delete(RunStep).where(RunStep.run_id == run_id, RunStep.kind == STEP,
                              RunStep.status == FAILED)
    )


def copy_record(session: Session, source_run_id: str, target_run_id: str, before: int) -> int:
    """A replay from a step: the original's completed record before position ``before``
    becomes the new run's (answered from it, never done again). Returns how many rows."""
    rows = session.execute(
        select(RunStep).where(
            RunStep.run_id == source_run_id, RunStep.position < before,
            RunStep.status.in_([COMPLETED, FAILED]),
        ).order_by(RunStep.position)
    ).scalars().all()
    if [r.position for r in rows] != list(range(before)):
        raise InvalidInput(
            f"run {source_run_id} has no completed record up to step {before}"
        )
    if rows:
        session.execute(pg_insert(RunStep).values([
            {"run_id": target_run_id, "position": r.position, "kind": r.kind, "name": r.name,
             "status": r.status, "output": r.output, "error": r.error, "detail": r.detail,
             "attempt_number": 0, "copied_from": source_run_id,
             "completed_at": r.completed_at}
            for r in rows
        ]))
    return len(rows)


def step_position(session: Session, run_id: str, step: str) -> int:
    """Where a replay ``fromStep`` starts: a position (``"3"``) or a step's name (its
    first occurrence, or ``name#2`` for the second)."""
    record = record_of(session, run_id)
    if step.isdigit():
        position = int(step)
        if position >= len(record) + 1:
            raise InvalidInput(f"run {run_id} has {len(record)} recorded steps")
        return position
    name, _, occurrence = step.partition("#")
    wanted = int(occurrence) if occurrence.isdigit() else 1
    seen = 0
    for entry in record:
        if entry.name == name:
            seen += 1
            if seen == wanted:
                return entry.position
    raise InvalidInput(f"run {run_id} recorded no step {step!r}")


def steps_of(session: Session, run_id: str) -> list[RunStep]:
    """The record as stored (the run page, the trace)."""
    return list(session.scalars(
        select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.position)
    ))


# --- waits --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    task_id: str
    payload: Any
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WaitSpec:
    """What a wait waits for: a time (``seconds`` from now on the database clock, or
    ``until``), children to trigger, or a token (with an optional deadline)."""

    kind: str  # "datetime" | "run" | "token"
    seconds: float | None = None
    until: datetime | None = None
    children: Sequence[ChildSpec] = ()
    batch: bool = False
    token: str | None = None


# Triggers one child of ``run`` whose end completes ``waitpoint_id``; returns its id.
TriggerChild = Callable[[Session, Run, ChildSpec, str], str]


def begin_wait(
    session: Session, run: Run, position: int, name: str, attempt_number: int,
    spec: WaitSpec, trigger_child: TriggerChild,
) -> Entry:
    """Record a wait at ``position`` and create what it waits on (a time's waitpoint, the
    children with theirs; a token exists already). One transaction: a crash before its
    commit leaves nothing, after it the re-execution finds the wait and waits on the same
    waitpoints (no child is triggered twice)."""
    now = db_now(session)
    detail: dict[str, Any] = {"type": spec.kind}
    waitpoints: list[str] = []
    if spec.kind == "datetime":
        until = spec.until or now + timedelta(seconds=spec.seconds or 0)
        detail["until"] = until.isoformat()
        waitpoints.append(_new_datetime(session, run, until, now))
    elif spec.kind == "run":
        children = []
        for child in spec.children:
            waitpoint_id = _insert_waitpoint(session, run, RUN)
            child_id = trigger_child(session, run, child, waitpoint_id)
            session.execute(update(Waitpoint).where(Waitpoint.id == waitpoint_id)
                            .values(run_id=child_id))
            children.append(child_id)
            waitpoints.append(waitpoint_id)
        detail.update(runs=children, batch=spec.batch)
    elif spec.kind == "token":
        token = session.get(Waitpoint, spec.token)
        if token is None or token.environment_id != run.environment_id or token.type != TOKEN:
            raise NotFound(f"waitpoint token {spec.token} not found")
        detail["token"] = token.id
        waitpoints.append(token.id)
        if spec.seconds is not None or spec.until is not None:
            until = spec.until or now + timedelta(seconds=spec.seconds or 0)
            detail["deadline"] = until.isoformat()
            detail["any"] = True
            waitpoints.append(_new_datetime(session, run, until, now))
    else:  # pragma: no cover - the worker builds every WaitSpec
        raise ValueError(spec.kind)
    detail["waitpoints"] = waitpoints
    session.add(RunStep(run_id=run.id, position=position, kind=WAIT, name=name,
                        status=WAITING, detail=detail, attempt_number=attempt_number))
    session.flush()
    return Entry(position, WAIT, name, WAITING, None, None, detail)


def _insert_waitpoint(session: Session, run: Run, kind: str, **values: Any) -> str:
    waitpoint_id = new_id("waitpoint")
    session.add(Waitpoint(id=waitpoint_id, project_id=run.project_id,
                          environment_id=run.environment_id, type=kind, status=WAITING,
                          tags=[], output_is_error=False, **values))
    session.flush()
    return waitpoint_id


def _new_datetime(session: Session, run: Run, until: datetime, now: datetime) -> str:
    waitpoint_id = _insert_waitpoint(session, run, DATETIME, complete_after=until)
    arm_if_due_soon(session, waitpoint_id, until, now)
    return waitpoint_id


def arm_if_due_soon(session: Session, waitpoint_id: str, due: datetime, now: datetime) -> None:
    """A waitpoint due within the horizon gets its timer (published after commit); the
    sweep arms the others as they enter it, and completes any whose timer was lost."""
    if due - now > horizon():
        return
    session.execute(update(Waitpoint).where(Waitpoint.id == waitpoint_id)
                    .values(timer_armed=True))
    on_commit(session, lambda: broker.arm_waitpoint_timer(waitpoint_id, due))


def settle(session: Session, run_id: str, entry: Entry) -> Entry:
    """A recorded wait an execution reached: completed now if what it waits for is over
    (its answer recorded), else left WAITING (the execution suspends on it)."""
    if entry.status != WAITING:
        return entry
    detail = entry.detail or {}
    states = lock_waitpoints(session, detail.get("waitpoints", []))
    if not is_over(detail, states):
        return entry
    return complete_wait(session, run_id, entry, states)


def suspend(
    session: Session, run: Run, worker: str, elapsed_ms: int, entry: Entry
) -> str:
    """End the execution at the recorded wait ``entry``: the run waits on its waitpoints
    (WAITING, no slot held). If they are over already (completed between the wait's start
    and now), the run is queued again at once. Returns the run's status, or "settled" if
    the worker no longer held it (canceled meanwhile)."""
    detail = entry.detail or {}
    ids = detail.get("waitpoints", [])
    states = lock_waitpoints(session, ids)
    if not lifecycle.suspend(session, run.id, worker, elapsed_ms):
        return "settled"
    if ids:
        session.execute(pg_insert(WaitpointBlock).values([
            {"waitpoint_id": waitpoint_id, "run_id": run.id, "position": entry.position}
            for waitpoint_id in ids
        ]).on_conflict_do_nothing())
    if is_over(detail, states):
        complete_wait(session, run.id, entry, states)
        session.execute(delete(WaitpointBlock).where(WaitpointBlock.run_id == run.id))
        lifecycle.resume(session, [run.id])
        return RunStatus.QUEUED
    return RunStatus.WAITING


# --- completing waitpoints ----------------------------------------------------------------


# A timer that ends its waitpoint ends up to this many others due by then, in the same
# transaction (shared.durable.waits.end_due).
DUE_TOGETHER = 100


def complete_due(session: Session, waitpoint_id: str) -> bool:
    """What a waitpoint's timer does: a time completes, a token times out — if due by the
    database clock, with others due by then; one that fired early is armed again for the
    rest."""
    row = session.execute(
        select(Waitpoint.status, Waitpoint.complete_after).where(Waitpoint.id == waitpoint_id)
    ).first()
    if row is None or row.status != WAITING or row.complete_after is None:
        return False
    if waits.end_due(session, waitpoint_id, lifecycle.resume, others=DUE_TOGETHER - 1):
        return True
    remaining = (row.complete_after - db_now(session)).total_seconds()
    if remaining > 0:
        on_commit(session, lambda: broker.arm_waitpoint_timer_in(waitpoint_id, remaining))
    # Due, yet not ended here: it ended meanwhile, or another transaction holds it (a
    # timer's or the sweep's batch ending it); if that one rolls back, the sweep ends it.
    return False


@dataclass(frozen=True)
class SweepResult:
    completed: int
    armed: int


def complete_due_waitpoints(session: Session, batch_size: int = 1000) -> SweepResult:
    """The backstop: complete every overdue waitpoint (its timer was lost: a Redis flush,
    a restart), and arm timers for those entering the horizon. Rows are taken with ``FOR
    UPDATE SKIP LOCKED``: two sweeps split the work."""
    completed = 0
    while True:
        ended = waits.end_all_due(session, lifecycle.resume, limit=batch_size)
        completed += len(ended)
        if len(ended) < batch_size:
            break
    entering = session.execute(
        update(Waitpoint)
        .where(Waitpoint.id.in_(
            select(Waitpoint.id)
            .where(Waitpoint.status == WAITING, Waitpoint.timer_armed.is_(False),
                   Waitpoint.complete_after <= func.now() + horizon())
            .order_by(Waitpoint.complete_after).limit(batch_size)
            .with_for_update(skip_locked=True)
        ))
        .values(timer_armed=True)
        .returning(Waitpoint.id, Waitpoint.complete_after)
    ).all()
    if entering:
        timers = [(row.id, row.complete_after) for row in entering]
        on_commit(session, lambda: broker.arm_waitpoint_timers(timers))
    return SweepResult(completed, len(entering))


# --- tokens -------------------------------------------------------------------------------


def callback_hash(waitpoint_id: str) -> str:
    """The secret part of a token's callback URL: an HMAC of its id under the server's
    secret (unguessable without it, checked in constant time)."""
    secret = get_settings().secret_key.encode()
    return hmac.new(secret, waitpoint_id.encode(), hashlib.sha256).hexdigest()[:40]


def waiting_for(session: Session, run_id: str) -> dict[str, Any] | None:
    """What a WAITING run waits for (the run page): its wait's detail and waitpoints."""
    entry = waiting_entry(session, run_id)
    if entry is None:
        return None
    detail = dict(entry.detail or {})
    detail["name"] = entry.name
    detail["position"] = entry.position
    return detail
