"""All SQL for runs, attempts and checkpoints.

Every status change goes through :func:`transition`, a compare-and-set on the state
machine's table: ``UPDATE … WHERE status = ANY(:allowed) RETURNING …``. Only
:mod:`shared.runs.lifecycle` calls it (and ``transition_many``): the moves own the
columns they write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    any_,
    bindparam,
    column,
    func,
    insert,
    inspect,
    null,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from reprise_server.shared.idempotency import KeyTaken
from reprise_server.shared.runs import changes
from reprise_server.shared.runs.models import Attempt, Checkpoint, Run
from reprise_server.shared.runs.states import AttemptStatus, RunStatus, sources_of

T = TypeVar("T")


class DuplicateRun(KeyTaken):
    """An idempotency key or request key is already taken by another run."""


_RUNS = cast(Table, Run.__table__)
_RUN_COLUMNS = [(attr.key, attr.columns[0].key) for attr in inspect(Run).column_attrs]


def run_insert(sql_values: Mapping[str, Any]) -> Any:
    """A run INSERT to prebuild, whose ``sql_values`` columns are SQL expressions (the
    database clock, say) returned to the caller; the other columns are the run's values.

    No savepoint: a key another request took first makes the INSERT return no row
    (instead of an error that would abort the transaction), which is the whole answer."""
    returned = [_RUNS.c.id, *(_RUNS.c[name] for name in sql_values)]
    return pg_insert(_RUNS).values(dict(sql_values)).on_conflict_do_nothing().returning(*returned)


_INSERT_RUN = run_insert({})


def insert_run(
    session: Session, run: Run, statement: Any = _INSERT_RUN, **params: Any
) -> Run:
    """Insert ``run`` (a new, unsaved object: the columns it has values for, the others
    their defaults, as the ORM would) with ``statement`` (from :func:`run_insert`, taking
    ``params``); raises DuplicateRun when one of its idempotency keys is already taken.
    ``run`` stays a plain object, not in the session, given the columns SQL computed."""
    given = run.__dict__
    values = {column: given[key] for key, column in _RUN_COLUMNS if key in given}
    row = session.execute(statement, {**values, **params}).first()
    if row is None:
        raise DuplicateRun(run.id)
    for name, value in row._asdict().items():
        if name != "id":
            setattr(run, name, value)
    changes.record_change(session, run.id, run.status, run.task_identifier, run.environment_id)
    return run


def get_run(session: Session, environment_id: str | None, run_id: str) -> Run | None:
    query = select(Run).where(Run.id == run_id)
    if environment_id is not None:
        query = query.where(Run.environment_id == environment_id)
    return session.scalars(query).first()


def lock_run(session: Session, run_id: str, environment_id: str | None = None) -> Run | None:
    """The run with its row locked until commit; with ``environment_id``, only a run of
    that environment (another's is neither returned nor locked)."""
    where = [Run.id == run_id]
    if environment_id is not None:
        where.append(Run.environment_id == environment_id)
    return session.scalars(select(Run).where(*where).with_for_update()).first()


def find_by_idempotency_key(
    session: Session, environment_id: str, task_identifier: str, key_hash: str
) -> Run | None:
    return session.scalars(
        select(Run).where(
            Run.environment_id == environment_id,
            Run.task_identifier == task_identifier,
            Run.idempotency_key_hash == key_hash,
        )
    ).first()


def find_by_request_key(session: Session, environment_id: str, request_key: str) -> Run | None:
    return session.scalars(
        select(Run).where(
            Run.environment_id == environment_id, Run.request_idempotency_key == request_key
        )
    ).first()


def release_idempotency_key(session: Session, run_id: str) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(idempotency_key_hash=None))


def release_request_key(session: Session, run_id: str) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(request_idempotency_key=None))


def transition(
    session: Session,
    run_id: str,
    target: RunStatus,
    *,
    sources: Collection[RunStatus] | None = None,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
) -> Run | None:
    """Move a run to ``target`` if its status allows it; returns the updated run or None.

    ``sources`` narrows the states the state machine allows (never widens them); ``where``
    adds guards such as a schedule token. ``values`` are written in the same statement.
    """
    allowed = _allowed(target, sources)
    if not allowed:
        return None
    stmt = _transition_statement(target, allowed, _RUNS.c.id == run_id, where, values)
    # Core, not the ORM's bulk update: the moves are the hot path of every run, and
    # loading the returned row through the ORM costs more than the statement itself.
    return _moved(session, session.connection().execute(stmt).first())


def _allowed(target: RunStatus, sources: Collection[RunStatus] | None) -> frozenset[RunStatus]:
    allowed = sources_of(target)
    return allowed if sources is None else allowed & frozenset(sources)


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
        .where(which, _RUNS.c.status.in_(list(allowed)), *where)
        .values(status=target, updated_at=func.now(), **(values or {}))
        .returning(*returning)
    )


@dataclass(frozen=True)
class PreparedTransition:
    """:func:`transition` built once, with bind parameters (``run_id`` and whatever its
    guards and values name): the moves every run makes, without building (and cache-keying)
    the statement each time."""

    statement: Any

    def __call__(self, session: Session, run_id: str, **params: Any) -> Run | None:
        row = session.connection().execute(self.statement, {"run_id": run_id, **params}).first()
        return _moved(session, row)


def prepare_transition(
    target: RunStatus,
    *,
    sources: Collection[RunStatus] | None = None,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
) -> PreparedTransition:
    return PreparedTransition(_prepared_statement(target, sources, where, values))


@dataclass(frozen=True)
class PreparedMove:
    """A :class:`PreparedTransition` whose caller only needs to know whether the run moved
    (a run's completion): no row comes back to decode, no Run is built."""

    statement: Any

    def __call__(self, session: Session, run_id: str, **params: Any) -> bool:
        row = session.connection().execute(self.statement, {"run_id": run_id, **params}).first()
        if row is None:
            return False
        _record_move(session, *row)
        return True


_MOVE_HEAD = (_RUNS.c.id, _RUNS.c.status, _RUNS.c.task_identifier, _RUNS.c.environment_id)


def prepare_move(
    target: RunStatus,
    *,
    sources: Collection[RunStatus] | None = None,
    where: Sequence[Any] = (),
    values: dict[str, Any] | None = None,
) -> PreparedMove:
    return PreparedMove(_prepared_statement(target, sources, where, values, _MOVE_HEAD))


def _prepared_statement(
    target: RunStatus,
    sources: Collection[RunStatus] | None,
    where: Sequence[Any],
    values: dict[str, Any] | None,
    returning: Iterable[Any] = _RUNS.columns,
) -> Any:
    allowed = _allowed(target, sources)
    assert allowed, f"no state may move to {target}"
    which = _RUNS.c.id == bindparam("run_id")
    return _transition_statement(target, allowed, which, where, values, returning)


def _moved(session: Session, row: Any) -> Run | None:
    if row is None:
        return None
    run = _run_of(row)
    _record_move(session, run.id, run.status, run.task_identifier, run.environment_id)
    return run


def _record_move(
    session: Session, run_id: str, status: str, task: str, environment_id: str
) -> None:
    loaded = session.identity_map.get(identity_key(Run, (run_id,)))
    if loaded is not None:  # a copy this session read earlier is now stale
        session.expire(loaded)
    changes.record_change(session, run_id, status, task, environment_id)


def _run_of(row: Any) -> Run:
    """A Run (not in any session) from a row of every ``runs`` column."""
    mapping = row._mapping
    return Run(**{key: mapping[column] for key, column in _RUN_COLUMNS})


@dataclass(frozen=True)
class BatchTransition:
    """What a batch transition moved: the run ids, the largest ``progress`` value among
    them (where to resume walking an index in the same transaction), each run's queue
    (aligned with ``run_ids``) and, if asked for, each run's ``progress`` value."""

    run_ids: list[str]
    last: Any
    progress: list[Any]
    queues: list[str | None] = field(default_factory=list)

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
            progress.label("progress"),
        )
        .cte("moved")
    )
    stmt = select(
        moved.c.task_identifier,
        moved.c.environment_id,
        moved.c.queue,
        func.array_agg(moved.c.id),
        func.max(moved.c.progress),
        func.array_agg(moved.c.progress) if each_progress else null(),
    ).group_by(moved.c.task_identifier, moved.c.environment_id, moved.c.queue)
    # Core execution: the ORM adds nothing here but overhead.
    groups = session.connection().execute(stmt).all()
    run_ids: list[str] = []
    queues: list[str | None] = []
    each: list[Any] = []
    last: Any = None
    for task, environment_id, queue, ids, group_last, group_each in groups:
        # The state-change log lines and counters (one line per task and environment).
        changes.record_changes(session, target.value, [(i, task, environment_id) for i in ids])
        run_ids.extend(ids)
        queues.extend([queue] * len(ids))
        each.extend(group_each or ())
        if group_last is not None and (last is None or group_last > last):
            last = group_last
    return BatchTransition(run_ids, last, each, queues)


def drain(step: Callable[[Any], tuple[Sequence[T], Any]], batch_size: int) -> list[T]:
    """Run a batched sweep step until a batch comes back short: ``step(resume_from)``
    returns what it did and where the next batch resumes its index walk (the rows a batch
    moved keep their old index entries until vacuum, so restarting from the beginning on
    every batch would make a large sweep quadratic)."""
    done: list[T] = []
    resume_from: Any = None
    while True:
        items, resume_from = step(resume_from)
        done.extend(items)
        if len(items) < batch_size:
            return done


def touch(session: Session, run_id: str, where: Sequence[Any] = (), **values: Any) -> bool:
    """Update non-status fields of a run; returns whether a row matched."""
    result = session.execute(
        update(Run).where(Run.id == run_id, *where).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RunFilter:
    statuses: frozenset[RunStatus] | None = None
    task_identifiers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    is_test: bool | None = None
    batch_id: str | None = None
    replayed_from: str | None = None
    schedule_id: str | None = None
    replays_only: bool = False
    run_ids: tuple[str, ...] = ()
    bulk_action_id: str | None = None


# The runs a bulk action produced or changed (its items' results), named without importing
# the bulk package, which sits above this one.
_BULK_ITEMS = table("bulk_action_items", column("bulk_action_id"), column("result_run_id"))


def _apply_filter(query: Any, environment_id: str, f: RunFilter) -> Any:
    query = query.where(Run.environment_id == environment_id)
    if f.statuses is not None:
        query = query.where(Run.status.in_(list(f.statuses)))
    if f.task_identifiers:
        query = query.where(Run.task_identifier.in_(f.task_identifiers))
    if f.tags:
        query = query.where(Run.tags.overlap(list(f.tags)))
    if f.versions:
        query = query.where(Run.version.in_(f.versions))
    if f.created_from is not None:
        query = query.where(Run.created_at >= f.created_from)
    if f.created_to is not None:
        query = query.where(Run.created_at <= f.created_to)
    if f.is_test is not None:
        query = query.where(Run.is_test == f.is_test)
    if f.batch_id is not None:
        query = query.where(Run.batch_id == f.batch_id)
    if f.replayed_from is not None:
        query = query.where(Run.replayed_from == f.replayed_from)
    if f.schedule_id is not None:
        query = query.where(Run.schedule_id == f.schedule_id)
    if f.replays_only:
        query = query.where(Run.replayed_from.is_not(None))
    if f.run_ids:
        query = query.where(Run.id.in_(f.run_ids))
    if f.bulk_action_id is not None:
        query = query.where(Run.id.in_(
            select(_BULK_ITEMS.c.result_run_id).where(
                _BULK_ITEMS.c.bulk_action_id == f.bulk_action_id
            )
        ))
    return query


def list_runs(
    session: Session,
    environment_id: str,
    run_filter: RunFilter,
    limit: int,
    after: tuple[datetime, str] | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[Run]:
    """Newest first, keyset-paginated on ``(created_at, id)``; ``before`` walks backwards."""
    query = _apply_filter(select(Run), environment_id, run_filter)
    if after is not None:
        at, rid = after
        query = query.where(or_(Run.created_at < at, and_(Run.created_at == at, Run.id < rid)))
    if before is not None:
        at, rid = before
        query = query.where(or_(Run.created_at > at, and_(Run.created_at == at, Run.id > rid)))
        rows = list(
            session.scalars(query.order_by(Run.created_at.asc(), Run.id.asc()).limit(limit))
        )
        rows.reverse()
        return rows
    return list(session.scalars(query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)))


def count_runs(session: Session, environment_id: str, run_filter: RunFilter) -> int:
    query = _apply_filter(select(func.count()).select_from(Run), environment_id, run_filter)
    return int(session.execute(query).scalar_one())


def run_ids_matching(
    session: Session, environment_id: str, run_filter: RunFilter, limit: int
) -> list[str]:
    query = _apply_filter(select(Run.id), environment_id, run_filter)
    return list(session.scalars(query.order_by(Run.created_at.desc()).limit(limit)))


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


def related_runs(session: Session, run: Run) -> dict[str, Any]:
    ids = [i for i in (run.root_run_id, run.parent_run_id) if i]
    by_id = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(ids)))} if ids else {}
    children = list(
        session.scalars(
            select(Run).where(Run.parent_run_id == run.id).order_by(Run.created_at).limit(100)
        )
    )
    return {
        "root": by_id.get(run.root_run_id) if run.root_run_id else None,
        "parent": by_id.get(run.parent_run_id) if run.parent_run_id else None,
        "children": children,
    }


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


def pending_version_runs(
    session: Session, environment_id: str, task_identifiers: Collection[str], limit: int = 1000
) -> list[str]:
    return list(
        session.scalars(
            select(Run.id)
            .where(
                Run.environment_id == environment_id,
                Run.status == RunStatus.PENDING_VERSION,
                Run.task_identifier.in_(list(task_identifiers)),
            )
            .limit(limit)
        )
    )


def abandoned(stale: Any) -> ColumnElement[bool]:
    """A claimed run whose worker is gone: no heartbeat for ``stale`` (an interval, or a
    bind parameter of one), while the database itself has been up that long (after a
    Postgres restart every worker's heartbeats stopped for the outage; they get a full
    window to resume before any run is taken from them)."""
    return and_(
        Run.heartbeat_at < func.now() - stale,
        func.pg_postmaster_start_time() < func.now() - stale,
    )


def _waiting_lost(quiet: timedelta) -> ColumnElement[bool]:
    now = func.now()
    return (
        Run.status.in_([RunStatus.QUEUED, RunStatus.RETRYING])
        & (Run.dispatched_at < now - quiet)
        & func.coalesce(Run.next_attempt_at < now - quiet, True)
    )


def queues_of_lost_dispatches(session: Session, quiet: timedelta) -> set[str | None]:
    """The queues of queued or retrying runs not dispatched for ``quiet``."""
    return set(session.scalars(select(Run.queue).where(_waiting_lost(quiet)).distinct().limit(1000)))


def claim_lost_dispatches(
    session: Session,
    quiet: timedelta,
    stale: timedelta,
    limit: int,
    busy_queues: Collection[str | None] = (),
) -> list[tuple[str, str | None]]:
    """Runs whose execution message may be lost, stamped ``dispatched_at = now()`` so a
    concurrent sweep (``SKIP LOCKED``) or the next one does not pick them again at once:
    queued or retrying runs not dispatched for ``quiet`` (a retry counts from its due
    time) unless their queue is in ``busy_queues``, and claimed runs whose heartbeat and
    last dispatch are older than ``stale`` (and the database has been up that long: see
    ``lifecycle.abandoned``)."""
    now = func.now()
    claimed = [RunStatus.DEQUEUED, RunStatus.EXECUTING]
    waiting = _waiting_lost(quiet)
    busy = [q for q in busy_queues if q is not None]
    if busy:
        waiting = waiting & func.coalesce(Run.queue.not_in(busy), True)
    if None in busy_queues:
        waiting = waiting & Run.queue.is_not(None)
    candidates = (
        select(Run.id)
        .where(
            or_(
                waiting,
                Run.status.in_(claimed)
                & abandoned(stale)
                & func.coalesce(Run.dispatched_at < now - stale, True),
            )
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = session.execute(
        update(Run)
        .where(Run.id.in_(candidates))
        .values(dispatched_at=now)
        .returning(Run.id, Run.queue)
        .execution_options(synchronize_session=False)
    )
    return [(run_id, queue) for run_id, queue in rows]


def replays_of(session: Session, project_id: str, run_id: str, limit: int = 50) -> list[Run]:
    """Replays of a run in any environment of its project, oldest first."""
    return list(session.scalars(
        select(Run)
        .where(Run.project_id == project_id, Run.replayed_from == run_id)
        .order_by(Run.created_at, Run.id)
        .limit(limit)
    ))


def get_run_in_project(session: Session, project_id: str, run_id: str) -> Run | None:
    return session.scalars(
        select(Run).where(Run.id == run_id, Run.project_id == project_id)
    ).first()
