"""Completing waitpoints and waking the runs that wait on them.

Apart from :mod:`shared.durable.service` because a child run's end completes its
parent's waitpoint inside the compare-and-set that ends it: the run lifecycle calls in
here (it registers :func:`child_ended` with the compare-and-set), so nothing here imports
the lifecycle. Queueing a woken run again is the lifecycle's ``resume``, passed in.

Locks, in one order everywhere: waitpoints (in id order), then the waiting run's row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import any_, bindparam, case, delete, func, select, update
from sqlalchemy.orm import Session

from reprise_server.shared.durable.models import RunStep, Waitpoint, WaitpointBlock
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus

STEP, WAIT = "step", "wait"
COMPLETED, FAILED, WAITING, TIMED_OUT = "COMPLETED", "FAILED", "WAITING", "TIMED_OUT"
TOKEN, DATETIME, RUN = "TOKEN", "DATETIME", "RUN"

Resume = Callable[[Session, Collection[str]], Any]


@dataclass(frozen=True)
class Entry:
    """One recorded step or wait, as an execution reads it."""

    position: int
    kind: str
    name: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None


def entry_of(row: Any) -> Entry:
    return Entry(row.position, row.kind, row.name, row.status, row.output, row.error, row.detail)


@dataclass(frozen=True)
class _State:
    id: str
    type: str
    status: str
    output: Any
    is_error: bool


def lock_waitpoints(session: Session, ids: Collection[str]) -> dict[str, _State]:
    if not ids:
        return {}
    rows = session.execute(
        select(Waitpoint.id, Waitpoint.type, Waitpoint.status, Waitpoint.output,
               Waitpoint.output_is_error)
        .where(Waitpoint.id.in_(list(ids))).order_by(Waitpoint.id).with_for_update()
    ).all()
    return {row.id: _State(row.id, row.type, row.status, row.output, row.output_is_error)
            for row in rows}


def is_over(detail: dict[str, Any], states: dict[str, _State]) -> bool:
    done = [state.status != WAITING for state in states.values()]
    if not done:
        return True
    return any(done) if detail.get("any") else all(done)


def complete_wait(
    session: Session, run_id: str, entry: Entry, states: dict[str, _State]
) -> Entry:
    """Record the wait's answer: nothing for a time; the children's ends for a child wait;
    the token's data, or that it timed out, for a token."""
    detail = entry.detail or {}
    output: Any = None
    if detail.get("type") == "run":
        output = {"runs": _children_results(session, detail.get("runs", []))}
    elif detail.get("type") == "token":
        token = states.get(detail.get("token", ""))
        if token is not None and token.status == COMPLETED:
            output = {"ok": True, "output": token.output}
        else:
            output = {"ok": False}
    session.execute(
        update(RunStep).where(RunStep.run_id == run_id, RunStep.position == entry.position)
        .values(status=COMPLETED, output=output, completed_at=func.now())
    )
    return Entry(entry.position, entry.kind, entry.name, COMPLETED, output, None, detail)


def _children_results(session: Session, run_ids: list[str]) -> list[dict[str, Any]]:
    rows = {row.id: row for row in session.execute(
        select(Run.id, Run.status, Run.output, Run.output_type, Run.error)
        .where(Run.id.in_(run_ids))
    )}
    results = []
    for run_id in run_ids:
        row = rows.get(run_id)
        if row is None:
            results.append({"id": run_id, "status": "MISSING"})
            continue
        result: dict[str, Any] = {"id": run_id, "status": str(row.status)}
        if row.status is RunStatus.COMPLETED:
            result["output"] = row.output
            result["outputType"] = row.output_type
        else:
            result["error"] = row.error
        results.append(result)
    return results


def complete_waitpoint(
    session: Session, waitpoint_id: str, resume: Resume, output: Any = None, *,
    status: str = COMPLETED, is_error: bool = False,
) -> bool:
    """WAITING -> ``status`` (with ``output``), then queue every run whose wait that ends.
    False if it was no longer waiting (completed before: it keeps its first value)."""
    done = session.execute(
        update(Waitpoint).where(Waitpoint.id == waitpoint_id, Waitpoint.status == WAITING)
        .values(status=status, output=output, output_is_error=is_error,
                completed_at=func.now())
        .returning(Waitpoint.id)
    ).first()
    if done is None:
        return False
    _wake_blocked(session, [waitpoint_id], resume)
    return True


# What a timer writes when it ends a waitpoint: a time completes, a token times out.
_DUE = (Waitpoint.status == WAITING, Waitpoint.complete_after <= func.now())
_ENDED_BY_TIMER: dict[str, Any] = {
    "status": case((Waitpoint.type == TOKEN, TIMED_OUT), else_=COMPLETED),
    "output": None,
    "output_is_error": Waitpoint.type == TOKEN,
    "completed_at": func.now(),
}


def _ending(*where: Any) -> Any:
    """End (as a timer does) the waitpoints due by now that match ``where``, oldest first,
    at most ``:limit``, that no other transaction holds: whoever holds one is ending it,
    or changing it, and the sweep ends it if that transaction rolls back. Nothing here
    ever waits for a row lock, so a timer or a sweep never queues behind another."""
    return (
        update(Waitpoint)
        .where(Waitpoint.id == any_(func.array(
            select(Waitpoint.id).where(*_DUE, *where)
            .order_by(Waitpoint.complete_after).limit(bindparam("limit"))
            .with_for_update(skip_locked=True).scalar_subquery()
        )))
        .values(**_ENDED_BY_TIMER).returning(Waitpoint.id)
    )


_END_IF_DUE = _ending(Waitpoint.id == bindparam("waitpoint_id"))
_END_OTHERS_DUE = _ending(Waitpoint.id != bindparam("waitpoint_id"))
_END_ALL_DUE = _ending()


def end_due(session: Session, waitpoint_id: str, resume: Resume, *, others: int) -> bool:
    """A waitpoint's timer: it ends (a time completes, a token times out) if it is still
    waiting and due by the database clock, together with up to ``others`` more waitpoints
    due by then, and every run whose wait they end is queued. Waits that fall due together
    (runs that began waiting together) then cost one transaction, one publish and one
    timer's work, not one of each per waitpoint; the others' own timers find them ended.
    False if it was not waiting, not due yet, or held by another transaction (which is
    ending it, or the sweep will: a timer never waits for it)."""
    if session.execute(_END_IF_DUE, {"waitpoint_id": waitpoint_id, "limit": 1}).first() is None:
        return False
    more = session.scalars(
        _END_OTHERS_DUE, {"waitpoint_id": waitpoint_id, "limit": others}
    ).all() if others > 0 else []
    _wake_blocked(session, [waitpoint_id, *more], resume)
    return True


def end_all_due(session: Session, resume: Resume, *, limit: int) -> list[str]:
    """The sweep: up to ``limit`` waitpoints due by now, oldest first, ended in one
    statement (none another transaction holds), and the runs whose waits they end queued."""
    ended = list(session.scalars(_END_ALL_DUE, {"limit": limit}).all())
    if ended:
        _wake_blocked(session, ended, resume)
    return ended


def _wake_blocked(
    session: Session, waitpoint_ids: Collection[str], resume: Resume
) -> list[str]:
    blocked = session.scalars(
        select(WaitpointBlock.run_id).where(WaitpointBlock.waitpoint_id.in_(list(waitpoint_ids)))
        .distinct().order_by(WaitpointBlock.run_id)
    ).all()
    ready = []
    for run_id in blocked:
        status = session.scalar(select(Run.status).where(Run.id == run_id).with_for_update())
        if status is not RunStatus.WAITING:
            continue
        entry = waiting_entry(session, run_id)
        if entry is None:
            continue
        detail = entry.detail or {}
        states = lock_waitpoints(session, detail.get("waitpoints", []))
        if is_over(detail, states):
            complete_wait(session, run_id, entry, states)
            ready.append(run_id)
    if ready:
        session.execute(delete(WaitpointBlock).where(WaitpointBlock.run_id.in_(ready)))
        resume(session, ready)
    return ready


def waiting_entry(session: Session, run_id: str) -> Entry | None:
    row = session.execute(
        select(RunStep).where(RunStep.run_id == run_id, RunStep.kind == WAIT,
                              RunStep.status == WAITING)
        .order_by(RunStep.position.desc()).limit(1)
    ).scalar_one_or_none()
    return None if row is None else entry_of(row)


def child_ended(session: Session, waitpoint_ids: Collection[str], resume: Resume) -> None:
    """Children whose parents wait for them ended (in the transaction that ended them):
    their waitpoints complete, and a parent whose wait that ends is queued."""
    for waitpoint_id in sorted(set(waitpoint_ids)):
        complete_waitpoint(session, waitpoint_id, resume)
