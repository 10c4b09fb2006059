"""The SQL of runs as rows: insert and read, idempotency keys, lineage, and the recovery
sweeps' queries. Status changes are :mod:`shared.runs.cas`'s (through
:mod:`shared.runs.lifecycle`); filters and listing are :mod:`shared.runs.filters`'s;
attempts and checkpoints :mod:`shared.runs.attempts_repository`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    inspect,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from reprise_server.shared.db import Precompiled, first_in
from reprise_server.shared.idempotency import KeyTaken
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects.models import VersionTask, WorkerVersion
from reprise_server.shared.runs import changes
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import FINAL_STATES, RunStatus


class DuplicateRun(KeyTaken):
    """An idempotency key or request key is already taken by another run."""


_RUNS = cast(Table, Run.__table__)
# (attribute, column) of every mapped column: a Run from a row, or a row from a Run.
RUN_COLUMNS = [(attr.key, attr.columns[0].key) for attr in inspect(Run).column_attrs]


def _by_columns(
    sql_values: Mapping[str, Any], build: Callable[[list[str]], Any],
) -> Callable[[Iterable[str]], Precompiled]:
    """The statement ``build(names)`` for the run columns given (``sql_values`` aside),
    built and compiled once per set of columns, to be executed below SQLAlchemy: every
    trigger and replay inserts a run (:func:`shared.db.first_in`)."""
    built: dict[frozenset[str], Precompiled] = {}

    def statement(columns: Iterable[str]) -> Precompiled:
        key = frozenset(columns) - set(sql_values)
        found = built.get(key)
        if found is None:
            if len(built) >= 256:
                built.clear()
            found = built[key] = Precompiled(build(sorted(key)))
        return found

    return statement


def run_insert(sql_values: Mapping[str, Any]) -> Callable[[Iterable[str]], Precompiled]:
    """A run INSERT to prebuild, whose ``sql_values`` columns are SQL expressions (the
    database clock, say) returned to the caller; the other columns are the run's values.

    No savepoint: a key another request took first makes the INSERT return no row
    (instead of an error that would abort the transaction), which is the whole answer."""
    returned = [_RUNS.c.id, *(_RUNS.c[name] for name in sql_values)]

    def build(names: list[str]) -> Any:
        given = {name: bindparam(name, type_=_RUNS.c[name].type) for name in names}
        return (
            pg_insert(_RUNS).values({**given, **sql_values})
            .on_conflict_do_nothing().returning(*returned)
        )

    return _by_columns(sql_values, build)


_INSERT_RUN = run_insert({})


def insert_run(
    session: Session, run: Run, statement: Callable[[Iterable[str]], Precompiled] = _INSERT_RUN,
    **params: Any,
) -> Run:
    """Insert ``run`` (a new, unsaved object: the columns it has values for, the others
    their defaults, as the ORM would) with ``statement`` (from :func:`run_insert`, taking
    ``params``); raises DuplicateRun when one of its idempotency keys is already taken.
    ``run`` stays a plain object, not in the session, given the columns SQL computed."""
    given = run.__dict__
    values = {column: given[key] for key, column in RUN_COLUMNS if key in given}
    if not _returned_into(run, session, statement(values), {**values, **params}):
        raise DuplicateRun(run.id)
    return run


def _returned_into(
    run: Run, session: Session, insert: Precompiled, params: dict[str, Any],
) -> bool:
    """Execute ``insert`` of ``run``; the columns it returns set on ``run`` (and the change
    recorded), or False when it inserted nothing."""
    row = first_in(session, insert, params)
    if row is None:
        return False
    for column, value in zip(insert.statement.exported_columns, row, strict=True):
        if column.key != "id":
            setattr(run, column.key, value)
    changes.record_change(session, run.id, run.status, run.task_identifier, run.environment_id)
    return True


def run_insert_in_context(
    sql_values: Mapping[str, Any],
) -> Callable[[Iterable[str]], Precompiled]:
    """:func:`run_insert` that inserts only if the run's creation context, read by the
    statement itself, is the one its values were computed from
    (:func:`shared.projects.catalogue.context_guard`).

    Short on purpose: psycopg converts a statement of more than 4096 bytes or 50
    parameters anew on every execution, so columns left NULL are left out
    (:func:`insert_run_in_context`) rather than bound."""
    returned = [_RUNS.c.id, _RUNS.c.created_at, _RUNS.c.updated_at,
                *(_RUNS.c[name] for name in sql_values)]

    def build(names: list[str]) -> Any:
        context = catalogue.CREATION_CONTEXT.subquery("context")
        values = select(
            *(bindparam(name, type_=_RUNS.c[name].type) for name in names),
            *sql_values.values(),
        ).where(exists().select_from(context).where(catalogue.context_guard(context)))
        return (
            pg_insert(_RUNS).from_select([*names, *sql_values], values)
            .on_conflict_do_nothing().returning(*returned)
        )

    return _by_columns(sql_values, build)


# Columns a run may leave out for NULL: no default of their own.
_NULL_UNLESS_GIVEN = frozenset(
    column.key for column in _RUNS.c
    if column.nullable and column.default is None and column.server_default is None
)


def insert_run_in_context(
    session: Session, run: Run, statement: Callable[[Iterable[str]], Precompiled],
    guard: Mapping[str, Any], **params: Any,
) -> bool:
    """Insert ``run`` with ``statement`` (from :func:`run_insert_in_context`) if its
    creation context is still the one of ``guard``. False when nothing was inserted: the
    context changed, or one of its idempotency keys is taken (a plain :func:`insert_run`
    of the run built again tells which)."""
    given = run.__dict__
    values = {
        column: given[key] for key, column in RUN_COLUMNS
        if key in given and (given[key] is not None or column not in _NULL_UNLESS_GIVEN)
    }
    return _returned_into(
        run, session, statement(values),
        {**values, **params, **guard, "task_identifier": run.task_identifier},
    )


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


def pending_version_candidates(
    environment_id: str, task_identifiers: Collection[str], limit: int
) -> Select[Any]:
    """Up to ``limit`` of the environment's PENDING_VERSION runs of these tasks (for
    :func:`shared.runs.cas.transition_many`; ``ix_runs_pending_version`` serves it)."""
    return (
        select(Run.id)
        .where(
            Run.environment_id == environment_id,
            Run.status == RunStatus.PENDING_VERSION,
            Run.task_identifier.in_(list(task_identifiers)),
        )
        .limit(limit)
    )


def environments_with_pending_version(
    session: Session, environment_ids: Collection[str], task_identifiers: Collection[str]
) -> list[str]:
    """Those of these environments that have a PENDING_VERSION run of one of these tasks
    (``ix_runs_pending_version`` serves it, one probe per environment)."""
    if not environment_ids or not task_identifiers:
        return []
    return list(session.scalars(
        select(Run.environment_id)
        .where(
            Run.environment_id.in_(list(environment_ids)),
            Run.status == RunStatus.PENDING_VERSION,
            Run.task_identifier.in_(list(task_identifiers)),
        )
        .distinct()
    ))


def unfinished_descendants(session: Session, run_id: str) -> list[str]:
    """The runs ``run_id`` triggered, and theirs, to any depth, that have not finished
    (``ix_runs_parent`` serves each level)."""
    tree = select(Run.id).where(Run.parent_run_id == run_id).cte("tree", recursive=True)
    tree = tree.union_all(select(Run.id).where(Run.parent_run_id == tree.c.id))
    return list(session.scalars(
        select(Run.id).where(Run.id.in_(select(tree.c.id)),
                             Run.status.not_in(list(FINAL_STATES)))
        .order_by(Run.id)
    ))


def releasable_pending_version_candidates(limit: int) -> Select[Any]:
    """Up to ``limit`` PENDING_VERSION runs, of any environment, whose environment's
    current version has their task: runs a registration's release missed (they were
    inserted while the version was being registered).

    The tasks the current versions offer are a small set, read once (not a lookup per
    waiting run): runs that wait for a task no version offers cost the sweep nothing
    but their index entries."""
    current = (
        select(WorkerVersion.id)
        .ext(distinct_on(WorkerVersion.environment_id))
        .order_by(WorkerVersion.environment_id, WorkerVersion.registered_at.desc())
    )
    offered = select(VersionTask.environment_id, VersionTask.task_identifier).where(
        VersionTask.worker_version_id.in_(current)
    )
    return (
        select(Run.id)
        .where(
            Run.status == RunStatus.PENDING_VERSION,
            tuple_(Run.environment_id, Run.task_identifier).in_(offered),
        )
        .limit(limit)
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
        # Held back on purpose (waiting for a slot, or in a paused queue): never published.
        & or_(Run.admission.is_(None), Run.admission == "backoff")
        & (Run.dispatched_at < now - quiet)
        & func.coalesce(Run.next_attempt_at < now - quiet, True)
    )


def _claimed_lost(stale: timedelta) -> ColumnElement[bool]:
    return (
        Run.status.in_([RunStatus.DEQUEUED, RunStatus.EXECUTING])
        & abandoned(stale)
        & func.coalesce(Run.dispatched_at < func.now() - stale, True)
    )


def queues_of_lost_dispatches(
    session: Session, quiet: timedelta, stale: timedelta
) -> set[str | None]:
    """The queues of queued or retrying runs not dispatched for ``quiet`` and of claimed
    runs abandoned for ``stale``: the queues whose evidence a recovery sweep reads."""
    return set(session.scalars(
        select(Run.queue).where(or_(_waiting_lost(quiet), _claimed_lost(stale)))
        .distinct().limit(1000)
    ))


def dispatched_at_of(session: Session, run_ids: Collection[str]) -> dict[str, datetime]:
    """When each of these runs was last dispatched (runs never dispatched are left out)."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(Run.id, Run.dispatched_at).where(Run.id.in_(list(run_ids)))
    ).all()
    return {run_id: at for run_id, at in rows if at is not None}


@dataclass(frozen=True)
class LostDispatch:
    """A run whose execution message may be lost; ``waiting``: queued or retrying (else
    claimed by a worker gone silent)."""

    run_id: str
    queue: str | None
    waiting: bool


def lock_lost_dispatches(
    session: Session,
    quiet: timedelta,
    stale: timedelta,
    taken_before: Mapping[str | None, datetime | None],
    limit: int,
) -> list[LostDispatch]:
    """Lock (``SKIP LOCKED``: a concurrent sweep takes others) runs whose execution
    message is no longer in their queue: dispatched before ``taken_before[queue]`` (the
    queue's oldest message was published after that; None: the queue holds none of its
    own) and

    * queued or retrying, not dispatched for ``quiet`` (a retry counts from its due
      time); none in a queue missing from ``taken_before`` (its evidence is unknown);
    * or claimed, heartbeat and last dispatch older than ``stale`` (and the database up
      that long: see :func:`abandoned`); in a queue of unknown evidence, on that alone.
    """
    now = func.now()
    known = list(taken_before.items())
    waiting = _waiting_lost(quiet) & _dispatched_before(known, now - quiet)
    claimed = _claimed_lost(stale) & func.coalesce(
        _dispatched_before(known, now - stale), ~_in_queues([q for q, _ in known])
    )
    rows = session.execute(
        select(Run.id, Run.queue, Run.status.in_([RunStatus.QUEUED, RunStatus.RETRYING]))
        .where(or_(waiting, claimed))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [LostDispatch(run_id, queue, bool(is_waiting)) for run_id, queue, is_waiting in rows]


def _in_queues(queues: Collection[str | None]) -> ColumnElement[bool]:
    named = [q for q in queues if q is not None]
    return or_(
        Run.queue.in_(named) if named else false(),
        Run.queue.is_(None) if None in queues else false(),
    )


def _dispatched_before(
    taken_before: list[tuple[str | None, datetime | None]], window: Any
) -> ColumnElement[Any]:
    """``dispatched_at`` before the cutoff of the run's queue (``window``, or earlier
    when that queue's oldest message was published earlier); NULL for a queue not in
    ``taken_before``."""
    whens = [
        (
            Run.queue.is_(None) if queue is None else Run.queue == queue,
            Run.dispatched_at < (window if before is None else func.least(window, before)),
        )
        for queue, before in taken_before
    ]
    return case(*whens, else_=null()) if whens else null()


def mark_redispatched(session: Session, run_ids: Collection[str]) -> None:
    """Stamp ``dispatched_at = now()`` on runs whose execution is being republished: the
    queue evidence then tells whether that message is still waiting."""
    session.execute(
        update(Run).where(Run.id.in_(list(run_ids))).values(dispatched_at=func.now())
        .execution_options(synchronize_session=False)
    )


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
