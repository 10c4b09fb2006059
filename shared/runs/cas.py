"""The compare-and-set engine: every status change is one ``UPDATE … WHERE status =
ANY(:allowed) RETURNING …`` on the state machine's table (:mod:`shared.runs.states`).

Only :mod:`shared.runs.lifecycle` imports this module (a test pins it): the moves own the
columns they write, call sites name the move. The statement flavours: :func:`transition`
builds its statement per call; :func:`prepare_transition` builds it once, with bind
parameters, for the moves every run makes (and returns the moved run);
:func:`prepare_transition_opening` also inserts a row from the moved run (a first
attempt); :func:`prepare_move_closing` moves the run only after closing another row (its
attempt), for a caller that only needs to know what moved. :func:`transition_many` moves
a batch. A prepared move runs in a transaction (a session) or, committed on its own, in
an autocommit unit (:func:`shared.db.autocommit`), below SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    any_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from reprise_server.shared.db import Autocommit, Precompiled, first_in
from reprise_server.shared.flow import admission
from reprise_server.shared.runs import changes
from reprise_server.shared.runs.models import Run, detached_run
from reprise_server.shared.runs.repository import RUN_COLUMNS
from reprise_server.shared.runs.states import FINAL_STATES, HOLDS_SLOT, RunStatus, sources_of

_RUNS = cast(Table, Run.__table__)


def transition(
    session: Session,
    run_id: str,
    target: RunStatus,
    *,
    sources: Collection[RunStatus] | None = None,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
    skip_locked: bool = False,
) -> Run | None:
    """Move a run to ``target`` if its status allows it; returns the updated run or None.

    ``sources`` narrows the states the state machine allows (never widens them); ``where``
    adds guards such as a schedule token. ``values`` are written in the same statement.
    ``skip_locked``: a run another transaction holds is not waited for (None), the way a
    batch skips it.
    """
    allowed = _allowed(target, sources)
    if not allowed:
        return None
    which = _RUNS.c.id == run_id
    if skip_locked:
        which = _RUNS.c.id == (
            select(_RUNS.c.id).where(which).with_for_update(skip_locked=True).scalar_subquery()
        )
    stmt = _transition_statement(target, allowed, which, where, values)
    # Core, not the ORM's bulk update: the moves are the hot path of every run, and
    # loading the returned row through the ORM costs more than the statement itself.
    return _moved(session, session.connection().execute(stmt).first())


def _movable(target: RunStatus, sources: Collection[RunStatus] | None) -> frozenset[RunStatus]:
    """:func:`_allowed`, for a prepared move: one that no state may make is a bug."""
    allowed = _allowed(target, sources)
    assert allowed, f"no state may move to {target}"
    return allowed


def _allowed(target: RunStatus, sources: Collection[RunStatus] | None) -> frozenset[RunStatus]:
    allowed = sources_of(target)
    return allowed if sources is None else allowed & frozenset(sources)


def status_in(allowed: Collection[RunStatus]) -> ColumnElement[bool]:
    """``status IN ('A', 'B')`` with the statuses written into the statement: a list of
    bound values would be expanded into it again at every execution (SQLAlchemy's
    "post-compile" step, a twentieth of a worker's time per run)."""
    return _RUNS.c.status.in_([literal_column(f"'{status.value}'") for status in sorted(allowed)])


def _transition_statement(
    target: RunStatus,
    allowed: frozenset[RunStatus],
    which: ColumnElement[bool],
    where: Sequence[Any],
    values: dict[str, Any] | None,
    returning: Iterable[Any] = _RUNS.columns,
) -> Any:
    return (
        update(_RUNS)
        .where(which, status_in(allowed), *where)
        .values(status=target, updated_at=func.now(), **(values or {}))
        .returning(*returning)
    )


@dataclass(frozen=True)
class PreparedTransition:
    """:func:`transition` built once, with bind parameters (``run_id`` and whatever its
    guards and values name): the moves every run makes, without building (and cache-keying)
    the statement each time."""

    statement: Any
    precompiled: Precompiled = field(init=False)
    positions: list[tuple[str, int]] = field(init=False)

    def __post_init__(self) -> None:
        keys = [column.key for column in self.statement.exported_columns]
        object.__setattr__(self, "precompiled", Precompiled(self.statement))
        object.__setattr__(
            self, "positions", [(key, keys.index(column)) for key, column in RUN_COLUMNS]
        )

    def __call__(self, session: Session | Autocommit, run_id: str, **params: Any) -> Run | None:
        """The move in ``session``'s transaction, or (an :func:`shared.db.autocommit`
        unit) as a statement of its own, committed when it returns: for a move that asks
        nothing more of the transaction it would be in (no slot to give back, no parent
        to wake). Either way below SQLAlchemy (:class:`shared.db.Precompiled`)."""
        row = _executed(session, self.precompiled, {"run_id": run_id, **params})
        if row is None:
            return None
        run = detached_run.from_row(row, self.positions)
        _recorded(session, run.id, run.status, run.task_identifier, run.environment_id,
                  run.concurrency_limits is not None, run.waitpoint_id)
        return run


def prepare_transition_opening(
    target: RunStatus,
    opened: Table,
    opened_values: Callable[[Any], dict[str, Any]],
    *,
    sources: Collection[RunStatus] | None = None,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
) -> PreparedTransition:
    """:func:`prepare_transition` whose statement also inserts a row into ``opened``
    (``opened_values(moved)``: its columns from the moved row, a CTE, and bind parameters)
    when the run moves: one statement, one round trip (a first attempt's claim, start and
    attempt row)."""
    allowed = _movable(target, sources)
    moved = _transition_statement(
        target, allowed, _RUNS.c.id == bindparam("run_id"), where, values
    ).cte("moved")
    row = opened_values(moved)
    inserted = insert(opened).from_select(list(row), select(*row.values())).cte("opened")
    return PreparedTransition(select(*moved.c).add_cte(inserted))


# What a prepared move returns of the moved run: what recording the move needs.
_MOVE_HEAD = (
    _RUNS.c.id, _RUNS.c.status, _RUNS.c.task_identifier, _RUNS.c.environment_id,
    _RUNS.c.concurrency_limits.is_not(None), _RUNS.c.waitpoint_id,
)


# The run's id in a closing move, for both of its updates. Not ``run_id``, nor any name of
# a column of the closed table: SQLAlchemy would add such a parameter to that UPDATE's SET.
CLOSING_RUN = "b_closing_run"


@dataclass(frozen=True)
class PreparedClosingMove:
    """Closes another row (an attempt), then moves the run only if it did: ``(closed,
    moved)``; no run row comes back to decode, only the move's head."""

    statement: Any
    precompiled: Precompiled = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "precompiled", Precompiled(self.statement))

    def __call__(
        self, session: Session | Autocommit, run_id: str, **params: Any
    ) -> tuple[bool, bool]:
        """:meth:`PreparedTransition.__call__` of this move."""
        row = _executed(session, self.precompiled, {CLOSING_RUN: run_id, **params})
        assert row is not None  # the statement always answers one row
        closed, head = bool(row[0]), tuple(row[1:])
        if head[0] is None:
            return closed, False
        _recorded(session, *head)
        return closed, True


def _executed(
    session: Session | Autocommit, statement: Precompiled, values: dict[str, Any]
) -> tuple[Any, ...] | None:
    """A prepared move's row: alone in autocommit, or in ``session``'s transaction."""
    if isinstance(session, Autocommit):
        return session.first(statement, values)
    return first_in(session, statement, values)


def _recorded(
    session: Session | Autocommit, run_id: str, status: str, task: str, environment_id: str,
    limited: bool, waitpoint_id: str | None,
) -> None:
    """What a prepared move leaves behind: in its transaction (:func:`_record_move`), or
    at once for a move that committed on its own (:func:`_record_committed`)."""
    head = (run_id, status, task, environment_id, limited, waitpoint_id)
    if isinstance(session, Autocommit):
        _record_committed(*head)
    else:
        _record_move(session, *head)


def prepare_move_closing(
    target: RunStatus,
    closing: Any,
    *,
    sources: Collection[RunStatus] | None = None,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
    run_first: bool = False,
) -> PreparedClosingMove:
    """A prepared move and ``closing`` (an UPDATE, e.g. of the run's open attempt) in the
    same statement: one round trip where the two were two (a run's completion).

    By default ``closing`` runs first and the run moves only if it changed a row. With
    ``run_first`` the run moves first (its ``where`` decides) and ``closing`` changes its
    row only if the run moved: the statement writes both or nothing, so a caller that
    finds the run not moved knows nothing was written (run alone in autocommit,
    :func:`shared.db.autocommit`, it may then take the long way in a
    transaction)."""
    allowed = _movable(target, sources)
    which = _RUNS.c.id == bindparam(CLOSING_RUN)
    if run_first:
        moved = _transition_statement(target, allowed, which, where, values, _MOVE_HEAD)
        moved = moved.cte("moved")
        closed = closing.where(exists(select(moved.c.id))).returning(literal(1)).cte("closed")
    else:
        closed = closing.returning(literal(1)).cte("closed")
        moved = _transition_statement(
            target, allowed, which, [*where, exists(select(closed))], values, _MOVE_HEAD,
        ).cte("moved")
    one = select(literal(1).label("one")).subquery("one")
    count = select(func.count()).select_from(closed).scalar_subquery()
    return PreparedClosingMove(
        select(count.label("closed"), *moved.c).select_from(one.outerjoin(moved, true()))
    )


def prepare_transition(
    target: RunStatus,
    *,
    sources: Collection[RunStatus] | None = None,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
) -> PreparedTransition:
    return PreparedTransition(_prepared_statement(target, sources, where, values))


def _prepared_statement(
    target: RunStatus,
    sources: Collection[RunStatus] | None,
    where: Sequence[Any],
    values: dict[str, Any] | None,
    returning: Iterable[Any] = _RUNS.columns,
) -> Any:
    allowed = _movable(target, sources)
    which = _RUNS.c.id == bindparam("run_id")
    return _transition_statement(target, allowed, which, where, values, returning)


def _moved(session: Session, row: Any) -> Run | None:
    if row is None:
        return None
    run = _run_of(row)
    _record_move(session, run.id, run.status, run.task_identifier, run.environment_id,
                 run.concurrency_limits is not None, run.waitpoint_id)
    return run


def _record_move(
    session: Session, run_id: str, status: str, task: str, environment_id: str, limited: bool,
    waitpoint_id: str | None,
) -> None:
    loaded = session.identity_map.get(identity_key(Run, (run_id,)))
    if loaded is not None:  # a copy this session read earlier is now stale
        session.expire(loaded)
    changes.record_change(session, run_id, status, task, environment_id)
    if limited and status not in HOLDS_SLOT:
        # Its slots (or its place in line) go back in this transaction: the next run in
        # line is admitted before it commits (shared.flow.admission).
        admission.release(session, [run_id])
    if waitpoint_id is not None and status in FINAL_STATES:
        _children_ended(session, [waitpoint_id])


def _record_committed(
    run_id: str, status: str, task: str, environment_id: str, limited: bool,
    waitpoint_id: str | None,
) -> None:
    """:func:`_record_move` of a move that committed on its own. Such a move has nothing
    to do in its transaction: its guards keep it off the runs that would (one whose end
    gives slots back, or wakes the parent waiting on it)."""
    if (limited and status not in HOLDS_SLOT) or (
        waitpoint_id is not None and status in FINAL_STATES
    ):
        raise AssertionError(f"run {run_id} -> {status} needed its transaction")
    changes.changed(run_id, status, task, environment_id)


# Called with the waitpoints of runs a move ended whose parent waits for them (the
# lifecycle registers shared.durable.waits.child_ended here: the parent's wait may be
# over, in this very transaction).
ON_CHILDREN_ENDED: list[Callable[[Session, list[str]], None]] = []


def _children_ended(session: Session, waitpoint_ids: list[str]) -> None:
    for hook in ON_CHILDREN_ENDED:
        hook(session, waitpoint_ids)


def _run_of(row: Any) -> Run:
    """A Run (not in any session) from a row of every ``runs`` column: a read-only copy
    of what the move wrote."""
    mapping = row._mapping
    return detached_run(**{key: mapping[column] for key, column in RUN_COLUMNS})


@dataclass(frozen=True)
class BatchTransition:
    """What a batch transition moved: the run ids, the largest ``progress`` value among
    them (where to resume walking an index in the same transaction), each run's queue,
    task, environment and whether it holds concurrency limits (aligned with ``run_ids``)
    and, if asked for, each run's ``progress`` value."""

    run_ids: list[str]
    last: Any
    progress: list[Any]
    queues: list[str | None] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    limited: list[bool] = field(default_factory=list)

    def runs_with_queues(self) -> list[tuple[str, str | None]]:
        return list(zip(self.run_ids, self.queues, strict=True))


def transition_many(
    session: Session,
    target: RunStatus,
    candidates: Select[Any],
    *,
    sources: Collection[RunStatus],
    progress: Any,
    each_progress: bool = False,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
) -> BatchTransition:
    """:func:`transition` for a batch: move the runs ``candidates`` selects (a ``SELECT
    runs.id … ORDER BY … LIMIT n``) whose status allows it.

    The compare-and-set is in the candidates: they are narrowed to the allowed statuses
    and locked (``FOR UPDATE SKIP LOCKED``, which re-checks the condition on the row it
    locks, and skips rows another transaction is changing), so no other transaction can
    move them before the update. The update itself only matches ``id = ANY(ARRAY(…))``,
    the chosen ids collected first: whatever the planner thinks of their number, that is
    one primary-key probe per chosen row, and none at all when none was chosen. (A join,
    or any other condition here, lets it prefer scanning every run in the status.)

    The moved rows come back aggregated per task and environment (ids as one array each):
    a sweep moving a million runs spends its time in the database, not building rows.
    """
    allowed = _allowed(target, sources)
    if not allowed:
        return BatchTransition([], None, [])
    chosen = (
        candidates.where(Run.status.in_(list(allowed)))
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    moved = (
        update(Run)
        .where(Run.id == any_(func.array(chosen)), *where)
        .values(status=target, updated_at=func.now(), **(values or {}))
        .returning(
            Run.id, Run.task_identifier, Run.environment_id, Run.queue,
            Run.concurrency_limits.is_not(None).label("limited"),
            Run.waitpoint_id,
            progress.label("progress"),
        )
        .cte("moved")
    )
    stmt = select(
        moved.c.task_identifier,
        moved.c.environment_id,
        moved.c.queue,
        moved.c.limited,
        func.array_agg(moved.c.id),
        func.max(moved.c.progress),
        func.array_agg(moved.c.progress) if each_progress else null(),
        func.array_remove(func.array_agg(moved.c.waitpoint_id), None),
    ).group_by(moved.c.task_identifier, moved.c.environment_id, moved.c.queue, moved.c.limited)
    # Core execution: the ORM adds nothing here but overhead.
    groups = session.connection().execute(stmt).all()
    batch = BatchTransition([], None, [])
    last: Any = None
    ended_children: list[str] = []
    for task, environment_id, queue, limited, ids, group_last, group_each, waits in groups:
        # The state-change log lines and counters (one line per task and environment).
        changes.record_changes(session, target.value, [(i, task, environment_id) for i in ids])
        if limited and target not in HOLDS_SLOT:
            admission.release(session, ids)
        batch.run_ids.extend(ids)
        batch.queues.extend([queue] * len(ids))
        batch.tasks.extend([task] * len(ids))
        batch.environments.extend([environment_id] * len(ids))
        batch.limited.extend([bool(limited)] * len(ids))
        batch.progress.extend(group_each or ())
        if group_last is not None and (last is None or group_last > last):
            last = group_last
        ended_children.extend(waits or ())
    if ended_children and target in FINAL_STATES:
        _children_ended(session, ended_children)
    return replace(batch, last=last)


def touch(session: Session, run_id: str, where: Sequence[Any] = (), **values: Any) -> bool:
    """Update non-status fields of a run; returns whether a row matched."""
    result = session.execute(
        update(Run).where(Run.id == run_id, *where).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
