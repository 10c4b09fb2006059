"""The SQL of a run's attempts and checkpoints."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, func, insert, select, update
from sqlalchemy.orm import Session

from reprise_server.shared.runs.models import Attempt, Checkpoint
from reprise_server.shared.runs.states import AttemptStatus


def attempts_of(session: Session, run_ids: Collection[str]) -> dict[str, list[Attempt]]:
    found: dict[str, list[Attempt]] = {rid: [] for rid in run_ids}
    if not run_ids:
        return found
    for attempt in session.scalars(
        select(Attempt).where(Attempt.run_id.in_(list(run_ids))).order_by(Attempt.number)
    ):
        found[attempt.run_id].append(attempt)
    return found


_ATTEMPTS = cast(Table, Attempt.__table__)
_INSERT_ATTEMPT = insert(_ATTEMPTS)


def insert_attempt(session: Session, attempt: Attempt) -> Attempt:
    """Insert a new attempt; ``attempt`` stays out of the session."""
    session.connection().execute(_INSERT_ATTEMPT, {
        "id": attempt.id, "run_id": attempt.run_id, "number": attempt.number,
        "status": attempt.status, "worker": attempt.worker, "started_at": attempt.started_at,
    })
    return attempt


def finish_attempt(
    session: Session,
    run_id: str,
    number: int,
    status: AttemptStatus,
    error: dict[str, Any] | None,
    *,
    only_open: bool = True,
) -> bool:
    """End an attempt still executing; False if it had already ended (written before,
    by a commit whose outcome the caller could not see). ``only_open=False`` overwrites
    an ended one's status too."""
    statement = _END_OPEN_ATTEMPT if only_open else _END_ATTEMPT
    result = session.connection().execute(
        statement, {"b_run_id": run_id, "b_number": number, "status": status, "error": error}
    )
    return bool(result.rowcount)


def _end_attempt(*guards: Any) -> Any:
    return (
        update(_ATTEMPTS)
        .where(
            _ATTEMPTS.c.run_id == bindparam("b_run_id"),
            _ATTEMPTS.c.number == bindparam("b_number"),
            *guards,
        )
        .values(updated_at=func.now(), completed_at=func.now())
    )


def closing_open_attempt(status: AttemptStatus, run_param: str) -> Any:
    """The UPDATE that ends the run's open attempt (bind parameters ``run_param``, the
    run's id, and ``b_attempt``, its number) as ``status``, to be composed with the run's
    move (shared.runs.cas.prepare_move_closing)."""
    return (
        update(_ATTEMPTS)
        .where(
            _ATTEMPTS.c.run_id == bindparam(run_param),
            _ATTEMPTS.c.number == bindparam("b_attempt"),
            _ATTEMPTS.c.status == AttemptStatus.EXECUTING,
        )
        .values(status=status, error=None, updated_at=func.now(), completed_at=func.now())
    )


def attempt_open(run_param: str) -> Any:
    """Whether the run's attempt ``b_attempt`` is open (bind parameter ``run_param``, the
    run's id): a guard of the run's move that ends it
    (shared.runs.cas.prepare_move_closing, ``run_first``)."""
    return exists(select(_ATTEMPTS.c.id).where(
        _ATTEMPTS.c.run_id == bindparam(run_param),
        _ATTEMPTS.c.number == bindparam("b_attempt"),
        _ATTEMPTS.c.status == AttemptStatus.EXECUTING,
    ))


_END_ATTEMPT = _end_attempt()
_END_OPEN_ATTEMPT = _end_attempt(_ATTEMPTS.c.status == AttemptStatus.EXECUTING)


def fail_open_attempts(session: Session, run_id: str, error: dict[str, Any]) -> None:
    session.execute(
        update(Attempt)
        .where(Attempt.run_id == run_id, Attempt.status == AttemptStatus.EXECUTING)
        .values(
            status=AttemptStatus.FAILED, error=error, updated_at=func.now(),
            completed_at=func.now(),
        )
    )


def cancel_open_attempts(session: Session, run_id: str) -> None:
    session.execute(
        update(Attempt)
        .where(
            Attempt.run_id == run_id,
            Attempt.status.in_([AttemptStatus.PENDING, AttemptStatus.EXECUTING]),
        )
        .values(status=AttemptStatus.CANCELED, updated_at=func.now(), completed_at=func.now())
    )


def next_checkpoint_number(session: Session, run_id: str) -> int:
    current = session.execute(
        select(func.coalesce(func.max(Checkpoint.number), 0)).where(Checkpoint.run_id == run_id)
    ).scalar_one()
    return int(current) + 1


def insert_checkpoint(session: Session, checkpoint: Checkpoint) -> Checkpoint:
    session.add(checkpoint)
    session.flush()
    return checkpoint


def checkpoints_of(session: Session, run_id: str) -> list[Checkpoint]:
    return list(
        session.scalars(
            select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.number)
        )
    )


def get_checkpoint(session: Session, run_id: str, number: int) -> Checkpoint | None:
    return session.get(Checkpoint, (run_id, number))
