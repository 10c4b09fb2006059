"""Admission: which held-back run may take a slot of the limits it holds, and when.

A run that holds concurrency limits is not published when it enters its queue: it stands
in the admission line of each limit (``enter``). A run that leaves the states that hold a
slot (it ended, went into a retry's backoff, was parked) gives its slots and places in line
back (``release``) — a run canceled while executing once its worker has stopped its
function, so that the next run never overlaps it. Both are recorded on the session (a
savepoint rolled back takes back what was recorded inside it) and carried out in one step
just before the transaction commits (:func:`_settle`): the limits concerned are locked in
one order (their ids, sorted: no deadlock between two settlements; no row of a limit is
touched before its lock is held), the counters moved, and
each limit *filled* — the best-ranked waiting runs that have room under every limit they
hold are admitted (``admission`` cleared, a slot per limit taken) and published after
commit. So a freed slot admits the next run in the transaction that freed it, and a run
is only ever published holding its slots: nothing above a bound reaches a worker.

A run with several limits is admitted only when all have room; a limit this settlement
does not hold locked is taken with ``SKIP LOCKED`` (whoever holds it admits the run when
it settles, or the sweep does: :func:`sweep`). The design and its guarantees:
docs/concurrency.md.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, SessionTransaction

from reprise_server.shared import broker
from reprise_server.shared.db import on_commit
from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.admission")

# Why a run is held back from its queue (``runs.admission``).
WAITING = "waiting"  # in the admission line of its limits
PAUSED = "paused"  # its queue is paused
BACKOFF = "backoff"  # a limited run's retry: enters the line when its backoff ends

# At most this many runs admitted per limit in one settlement (the rest: the next one, or
# the sweep), so a transaction that frees one slot never turns into a long admission loop.
MAX_ADMITTED_PER_FILL = 200

_PENDING = "reprise.admission"
_TAKER = "reprise.admission.taker"


@dataclass
class Taker:
    """A worker finishing a run, ready to execute one run its own finishing transaction
    admits, in the slot that transaction freed, instead of publishing it.

    ``celery_queue``: the Celery queue the worker took the finishing run from; only a run
    bound for that queue is taken (one this worker consumes). ``taken`` is set once the
    transaction has committed: ``(run_id, queue)``, admitted and stamped ``dispatched_at``
    as any admitted run, only not published (so a worker that dies before claiming it
    leaves it to the recovery sweep, as a lost publish would)."""

    celery_queue: str
    taken: tuple[str, str | None] | None = None

    def choose(self, admitted: list[tuple[str, str | None]]) -> tuple[str, str | None] | None:
        """The first of the ``admitted`` runs bound for this taker's queue."""
        return next(
            (run for run in admitted if broker.execution_queue(run[1]) == self.celery_queue),
            None,
        )


def offer_to(session: Session, taker: Taker) -> None:
    """Of the runs this transaction admits, hand one bound for ``taker.celery_queue`` to
    ``taker`` after commit instead of publishing it (the others are published)."""
    session.info[_TAKER] = taker


def limit_id(environment_id: str, name: str) -> str:
    """A limit's id (``climit_…``): derived from its environment and name, so that a
    declaration and a run naming the limit agree without a lookup."""
    digest = hashlib.md5(f"{environment_id}/{name}".encode()).hexdigest()
    return f"climit_{digest}"


def queue_key(queue: str | None, task_identifier: str) -> str:
    """The queue a run waits in: its named queue, or its task's own (``task/<id>``)."""
    return queue if queue else f"task/{task_identifier}"


@dataclass
class _Pending:
    entered: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    # Limits to fill even if no run of theirs entered or left (a resumed or widened limit).
    fill: set[str] = field(default_factory=set)


def _pending(session: Session) -> _Pending:
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = _Pending()
    return pending


def enter(session: Session, run_ids: Iterable[str]) -> None:
    """These runs (``admission = 'waiting'``) stand in their limits' lines at commit."""
    _pending(session).entered.update(run_ids)


def release(session: Session, run_ids: Iterable[str]) -> None:
    """These runs give back their slots and places in line at commit."""
    _pending(session).released.update(run_ids)


def refill(session: Session, limit_ids: Iterable[str]) -> None:
    """Fill these limits at commit (their bounds widened, or they were resumed)."""
    _pending(session).fill.update(limit_ids)


def settle(session: Session) -> None:
    """Settle now what the commit would (a change that answers with the state it leads
    to: a resumed limit shows the runs it admitted); the commit then has nothing left."""
    _before_commit(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending is not None and (pending.entered or pending.released or pending.fill):
        _settle(session, pending)


# The work recorded when each savepoint of the session began: a savepoint rolled back
# takes back only what was recorded inside it (a batch makes each item in a savepoint; one
# refused item must not drop the line entries of the items before it).
_SAVEPOINTS = "reprise.admission.savepoints"


def _copy(pending: _Pending | None) -> _Pending | None:
    if pending is None:
        return None
    return _Pending(set(pending.entered), set(pending.released), set(pending.fill))


@event.listens_for(Session, "after_transaction_create")
def _transaction_began(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        saved = session.info.setdefault(_SAVEPOINTS, {})
        saved[transaction] = _copy(session.info.get(_PENDING))


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)
        return
    saved = session.info.get(_SAVEPOINTS, {}).pop(previous_transaction, None)
    if saved is None:
        session.info.pop(_PENDING, None)
    else:
        session.info[_PENDING] = saved


@event.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the session's own transaction: nothing outlives it
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVEPOINTS, None)
        session.info.pop(_TAKER, None)


def _settle(session: Session, pending: _Pending) -> int:
    """Carry out the recorded work (see the module's docstring); returns the runs admitted."""
    conn = session.connection()
    released = list(pending.released)
    entries: list[Any] = []
    if pending.entered:
        entries = list(conn.execute(_ENTRIES, {"ids": list(pending.entered)}).all())
        # A limit a run names but no version declared (yet): unbounded until one does.
        names = {(env, name) for _, env, name, _, _ in entries}
        if names:
            # In id order, as they are locked below (two settlements creating the same
            # limits wait for each other's inserts in one order).
            conn.execute(_ENSURE_LIMITS, sorted(
                ({"id": limit_id(env, name), "env": env, "name": name} for env, name in names),
                key=lambda row: row["id"],
            ))
    named = pending.fill | {limit_id(env, name) for _, env, name, _, _ in entries}
    if not named and not released:
        return 0
    # The limits concerned, locked in id order: those named, and those whose slots or
    # line the leaving runs hold, found by the same statement (the set cannot grow
    # meanwhile: these runs' rows are locked by this transaction, so no one admits them).
    # No row of theirs is touched before: a settlement that held a limit's rows while
    # waiting for the limit could deadlock with the sweep mending them. Nor by this
    # statement: under READ COMMITTED a statement reads the snapshot taken when it began,
    # before its wait for the locks, so the writes that follow (the keys' new heads
    # above all) are statements of their own, reading what the previous holder committed.
    limits = _lock_and_free(conn, sorted(named), released)
    if not limits:
        return 0
    if entries:
        conn.execute(_INSERT_LINE, [
            {"run_id": run_id, "limit_id": limit_id(env, name), "key": key, "rank": rank}
            for run_id, env, name, key, rank in entries
        ])
        arrivals = Counter((limit_id(env, name), key) for _, env, name, key, _ in entries)
        conn.execute(_KEYS_ARRIVED, [
            {"limit_id": lid, "key": key, "n": n} for (lid, key), n in arrivals.items()
        ])
    admitted: list[tuple[str, str | None]] = []
    for lid in limits:
        admitted.extend(_fill(conn, lid, held=set(limits)))
    taker: Taker | None = session.info.pop(_TAKER, None)
    kept = None if taker is None else taker.choose(admitted)
    if taker is not None and kept is not None:
        on_commit(session, lambda: setattr(taker, "taken", kept))
    published = [run for run in admitted if run is not kept]
    if published:
        on_commit(session, lambda: broker.dispatch_runs(published))
    return len(admitted)


def _lock_and_free(conn: Any, named: list[str], released: list[str]) -> list[str]:
    """Lock the limits concerned (:data:`_LOCK_LIMITS`) and give back what the leaving
    runs held (:data:`_FREE`): two statements, sent together in one round trip (a
    pipeline), so that the limits' locks are not held across a round trip more than
    needed. Each is still a statement of its own, with its own snapshot: the second runs
    once the first holds the locks. Returns the locked limits' ids."""
    lock = {"ids": named, "released": released}
    if not released:
        return list(conn.execute(_LOCK_LIMITS, lock).scalars())
    free = {"ids": released, "stale": get_settings().stale_run_seconds}
    driver = conn.connection.driver_connection
    with driver.pipeline():
        locked = driver.execute(_compiled(conn, _LOCK_LIMITS), lock)
        driver.execute(_compiled(conn, _FREE), free)
    return [row[0] for row in locked.fetchall()]


_COMPILED: dict[Any, str] = {}


def _compiled(conn: Any, statement: Any) -> str:
    sql = _COMPILED.get(statement)
    if sql is None:
        sql = _COMPILED[statement] = str(statement.compile(dialect=conn.dialect))
    return sql


def _fill(conn: Any, lid: str, held: Collection[str]) -> list[tuple[str, str | None]]:
    """Admit the best-ranked waiting runs of limit ``lid`` (locked by the caller) while it
    has room; returns the admitted runs' ``(id, queue)``, in admission order.

    Each step is one statement (:data:`_ADMIT_NEXT`): the limit's room read, the next key
    and its head found and locked, and that head admitted unless it holds another limit
    too (then the other limits are checked here first). It answers the room the limit had,
    so that the step that fills the last slot is the last one."""
    admitted: list[tuple[str, str | None]] = []
    skipped: list[str] = []
    while len(admitted) < MAX_ADMITTED_PER_FILL:
        step = conn.execute(_ADMIT_NEXT, {"limit_id": lid, "skipped": skipped}).first()
        if step is None:  # no room, paused, or no key with room has a waiting run
            break
        if step.admitted:
            admitted.append((step.run_id, step.queue))
            if step.room is not None and step.room <= 1:
                break
            continue
        if step.run_id is None or not _others_have_room(conn, step.run_id, lid, held):
            # Its head is locked by a transaction moving it, or another limit it holds is
            # full or busy: that key waits for the next settlement (or the sweep).
            skipped.append(step.key)
            continue
        admitted.append(_admit(conn, step.run_id))
    return admitted


def _others_have_room(conn: Any, run_id: str, lid: str, held: Collection[str]) -> bool:
    for other in conn.execute(_OTHER_LIMITS, {"run_id": run_id, "limit_id": lid}).all():
        if other.limit_id not in held and conn.execute(
            _TRY_LOCK_LIMIT, {"id": other.limit_id}
        ).first() is None:
            return False
        room = conn.execute(
            _ROOM_FOR_KEY, {"limit_id": other.limit_id, "key": other.key}
        ).first()
        if room is None or not room.has_room:
            return False
    return True


def _admit(conn: Any, run_id: str) -> tuple[str, str | None]:
    queue = conn.execute(_ADMIT, {"run_id": run_id}).scalar_one()
    return run_id, queue


# --- the sweep ----------------------------------------------------------------------------


def sweep(session: Session, batch: int = 100) -> int:
    """The backstop (a control beat): put waiting runs with no place in line back in it,
    expire lapsed per-key overrides, mend counters that disagree with the slots and line
    (none should; slots of runs that no longer hold them are dropped, those of a run
    canceled while executing once its heartbeat is stale), and fill every limit with room
    and a waiting run that no settlement filled (one whose last try was skipped). Limits
    locked by someone else are skipped: they are being settled. Returns the runs admitted."""
    conn = session.connection()
    stale = get_settings().stale_run_seconds
    # Runs marked waiting with no place in line (none should be: a lost record of their
    # entry) enter it now, first, while this transaction holds no limit yet.
    outside = conn.execute(_WAITING_OUTSIDE_LINE, {"batch": batch}).scalars().all()
    entered = 0
    if outside:
        log.warning("%d waiting run(s) had no place in line: entered", len(outside))
        entered = _settle(session, _Pending(entered=set(outside)))
    conn.execute(_EXPIRE_KEY_OVERRIDES)
    candidates = conn.execute(
        _LIMITS_TO_SWEEP, {"batch": batch, "stale": stale}
    ).scalars().all()
    admitted: list[tuple[str, str | None]] = []
    for lid in candidates:
        if conn.execute(_TRY_LOCK_LIMIT, {"id": lid}).first() is None:
            continue
        conn.execute(_MEND_LIMIT, {"id": lid, "stale": stale})
        admitted.extend(_fill(conn, lid, held={lid}))
    if admitted:
        on_commit(session, lambda: broker.dispatch_runs(admitted))
    return entered + len(admitted)


# --- statements ---------------------------------------------------------------------------

_WAITING_OUTSIDE_LINE = text(
    """
    SELECT r.id FROM runs r
    WHERE r.admission = 'waiting' AND r.status IN ('QUEUED', 'RETRYING')
      AND NOT EXISTS (SELECT 1 FROM admission_line a WHERE a.run_id = r.id)
    LIMIT :batch
    """
)

# A run canceled while a worker executes it keeps its slots until that worker has stopped
# its function (and cleared the heartbeat: ``lifecycle.attempt_stopped``), or, the worker
# gone silent, for the stale window: the bound counts executions, not statuses.
_STILL_EXECUTING = (
    "coalesce(r.status = 'CANCELED' AND r.locked_by IS NOT NULL"
    " AND r.heartbeat_at > now() - make_interval(secs => :stale), false)"
)
# The limits named (``ids``) and those whose slots or line the runs leaving (``released``)
# hold, locked in id order (the sort is below the lock: rows are locked as they come out
# of it, so two settlements never take two limits in opposite orders).
_LOCK_LIMITS = text(
    """
    SELECT id FROM concurrency_limits WHERE id IN (
        SELECT unnest(CAST(:ids AS varchar[]))
        UNION SELECT limit_id FROM concurrency_slots WHERE run_id = ANY(:released)
        UNION SELECT limit_id FROM admission_line WHERE run_id = ANY(:released)
    ) ORDER BY id FOR UPDATE
    """
)
# The leaving runs give back their slots and places in line, and the counters move: each
# limit's ``running``, each key's ``running``, ``waiting`` and head, in one statement (the
# limits are locked). Its parts read the snapshot from before it, where the deleted places
# still are: the keys' new heads leave them out explicitly.
_FREE = text(
    f"""
    WITH slots AS (
        DELETE FROM concurrency_slots s USING runs r
        WHERE s.run_id = ANY(:ids) AND r.id = s.run_id AND NOT {_STILL_EXECUTING}
        RETURNING s.limit_id, s.key
    ), places AS (
        DELETE FROM admission_line WHERE run_id = ANY(:ids) RETURNING limit_id, key
    ), freed AS (
        SELECT limit_id, key, count(*) FILTER (WHERE slot) AS running,
               count(*) FILTER (WHERE NOT slot) AS waiting
        FROM (SELECT true AS slot, limit_id, key FROM slots
              UNION ALL SELECT false, limit_id, key FROM places) AS gone
        GROUP BY limit_id, key
    ), limits AS (
        UPDATE concurrency_limits l SET running = greatest(l.running - f.n, 0)
        FROM (SELECT limit_id, sum(running) AS n FROM freed GROUP BY limit_id) f
        WHERE l.id = f.limit_id AND f.n > 0
    )
    UPDATE concurrency_keys k SET
        running = greatest(k.running - f.running, 0),
        waiting = greatest(k.waiting - f.waiting, 0),
        head_rank = (SELECT min(rank) FROM admission_line a
                     WHERE a.limit_id = k.limit_id AND a.key = k.key
                       AND a.run_id <> ALL(:ids))
    FROM freed f WHERE k.limit_id = f.limit_id AND k.key = f.key
    """
)

# The runs entering the line: one row per limit they hold, with their rank (queued that
# many seconds earlier for their priority).
_ENTRIES = text(
    """
    SELECT r.id, r.environment_id, l.name, coalesce(r.concurrency_key, ''),
           coalesce(r.queued_at, now()) - make_interval(secs => r.priority)
    FROM runs r, unnest(r.concurrency_limits) AS l(name)
    WHERE r.id = ANY(:ids) AND r.admission = 'waiting'
      AND r.status IN ('QUEUED', 'RETRYING')
    """
)
_ENSURE_LIMITS = text(
    """
    INSERT INTO concurrency_limits (id, environment_id, name, paused, running)
    VALUES (:id, :env, :name, false, 0) ON CONFLICT DO NOTHING
    """
)
_TRY_LOCK_LIMIT = text("SELECT id FROM concurrency_limits WHERE id = :id FOR UPDATE SKIP LOCKED")
_INSERT_LINE = text(
    """
    INSERT INTO admission_line (run_id, limit_id, key, rank)
    VALUES (:run_id, :limit_id, :key, :rank) ON CONFLICT DO NOTHING
    """
)
# A key seen for the first time takes the limit's per-key bound as its cap. (The casts:
# a parameter in a SELECT list is deduced as text, in the comparisons as varchar.)
_KEYS_ARRIVED = text(
    """
    INSERT INTO concurrency_keys (limit_id, key, running, waiting, head_rank, cap)
    SELECT CAST(:limit_id AS varchar), CAST(:key AS varchar), 0, CAST(:n AS integer),
           (SELECT min(rank) FROM admission_line a WHERE a.limit_id = :limit_id AND a.key = :key),
           coalesce(l.per_key_override, l.per_key_base)
    FROM concurrency_limits l WHERE l.id = :limit_id
    ON CONFLICT (limit_id, key) DO UPDATE SET
        waiting = concurrency_keys.waiting + :n,
        head_rank = EXCLUDED.head_rank
    """
)
_OTHER_LIMITS = text(
    "SELECT limit_id, key FROM admission_line WHERE run_id = :run_id AND limit_id <> :limit_id"
)
_ROOM_FOR_KEY = text(
    """
    SELECT NOT l.paused
           AND (coalesce(l.total_override, l.total_base) IS NULL
                OR l.running < coalesce(l.total_override, l.total_base))
           AND (k.cap IS NULL OR k.running < k.cap) AS has_room
    FROM concurrency_limits l JOIN concurrency_keys k ON k.limit_id = l.id
    WHERE l.id = :limit_id AND k.key = :key
    """
)


def _admitting(run: str) -> str:
    """The parts of a statement that admit the run ``run`` (an SQL expression): cleared for
    its queue, its places in line turned into slots, and the counters of its limits and
    keys moved. Every part reads the snapshot from before the statement, so the key's new
    head leaves this run's place out explicitly."""
    return f"""
    admitted AS (
        UPDATE runs SET admission = NULL, dispatched_at = now(), updated_at = now()
        WHERE id = {run} RETURNING id, queue
    ), gone AS (
        DELETE FROM admission_line WHERE run_id = {run} RETURNING run_id, limit_id, key
    ), taken AS (
        INSERT INTO concurrency_slots (run_id, limit_id, key)
        SELECT run_id, limit_id, key FROM gone
        ON CONFLICT DO NOTHING
        RETURNING limit_id, key
    ), limits AS (
        UPDATE concurrency_limits l SET running = l.running + 1
        FROM taken t WHERE l.id = t.limit_id
    ), keys AS (
        UPDATE concurrency_keys k SET
            running = k.running + 1,
            waiting = greatest(k.waiting - 1, 0),
            head_rank = (SELECT min(rank) FROM admission_line a
                         WHERE a.limit_id = k.limit_id AND a.key = k.key
                           AND a.run_id <> {run})
        FROM taken t WHERE k.limit_id = t.limit_id AND k.key = t.key
    )
    """


# Admit one run, in one statement (a run whose other limits were checked first).
_ADMIT = text(f"WITH {_admitting(':run_id')} SELECT queue FROM admitted")

# One step of a fill, in one statement. ``room``: the limit's room before this step (NULL:
# no bound), and no row at all when it has none or is paused. ``next``: the key whose
# head ranks best among the keys with room (the predicate is the partial index's,
# ix_concurrency_keys_ready: one probe), and that key's head, locked (``run_id`` NULL: a
# transaction moving it holds it). That head is admitted unless it also stands in the line
# of another limit (``others``: which must have room too, checked by the caller, which
# then admits it with _ADMIT).
_ADMIT_NEXT = text(
    f"""
    WITH room AS (
        SELECT coalesce(total_override, total_base) - running AS room
        FROM concurrency_limits WHERE id = :limit_id AND NOT paused
    ), next AS (
        SELECT k.key, h.run_id, h.others FROM (
            SELECT key FROM concurrency_keys
            WHERE limit_id = :limit_id AND head_rank IS NOT NULL
              AND (cap IS NULL OR running < cap)
              AND key <> ALL(CAST(:skipped AS varchar[]))
              AND EXISTS (SELECT 1 FROM room WHERE room IS NULL OR room > 0)
            ORDER BY head_rank LIMIT 1
        ) k LEFT JOIN LATERAL (
            SELECT a.run_id, EXISTS (
                SELECT 1 FROM admission_line o
                WHERE o.run_id = a.run_id AND o.limit_id <> :limit_id
            ) AS others
            FROM admission_line a JOIN runs r ON r.id = a.run_id
            WHERE a.limit_id = :limit_id AND a.key = k.key
            ORDER BY a.rank, a.run_id LIMIT 1
            FOR UPDATE OF r SKIP LOCKED
        ) h ON true
    ), chosen AS (
        SELECT run_id FROM next WHERE NOT others
    ), {_admitting("(SELECT run_id FROM chosen)")}
    SELECT next.key, next.run_id, next.others, admitted.id IS NOT NULL AS admitted,
           admitted.queue, (SELECT room FROM room) AS room
    FROM next LEFT JOIN admitted ON true
    """
)
_EXPIRE_KEY_OVERRIDES = text(
    """
    UPDATE concurrency_keys k SET override = NULL, override_expires_at = NULL,
        cap = coalesce(l.per_key_override, l.per_key_base)
    FROM concurrency_limits l
    WHERE l.id = k.limit_id AND k.override_expires_at <= now()
    """
)
# Limits with a key that has a waiting run and room, or whose counters may have drifted
# (a slot held by a run that no longer holds one: never written, but cheap to check). A
# run holds its slots from admission (``admission`` cleared) until it leaves QUEUED,
# DEQUEUED or EXECUTING — or RETRYING: a retry admitted once its backoff is over holds
# them in that status until a worker claims it.
# At most ``batch`` of them, those with room first (they can admit), the rest in random
# order: however many limits are full with runs waiting, every one is reached in turn.
_LIMITS_TO_SWEEP = text(
    f"""
    SELECT c.limit_id FROM (
        SELECT DISTINCT k.limit_id FROM concurrency_keys k
        WHERE k.head_rank IS NOT NULL AND (k.cap IS NULL OR k.running < k.cap)
        UNION
        SELECT DISTINCT s.limit_id FROM concurrency_slots s JOIN runs r ON r.id = s.run_id
        WHERE (r.status NOT IN ('QUEUED', 'DEQUEUED', 'EXECUTING', 'RETRYING')
               OR r.admission IS NOT NULL)
          AND NOT {_STILL_EXECUTING}
    ) c JOIN concurrency_limits l ON l.id = c.limit_id
    ORDER BY (NOT l.paused AND (coalesce(l.total_override, l.total_base) IS NULL
              OR l.running < coalesce(l.total_override, l.total_base))) DESC, random()
    LIMIT :batch
    """
)
# The counters from the rows they count (slots of runs that no longer hold one dropped).
_MEND_LIMIT = text(
    f"""
    WITH stale AS (
        DELETE FROM concurrency_slots s USING runs r
        WHERE s.limit_id = :id AND r.id = s.run_id
          AND (r.status NOT IN ('QUEUED', 'DEQUEUED', 'EXECUTING', 'RETRYING')
               OR r.admission IS NOT NULL)
          AND NOT {_STILL_EXECUTING}
        RETURNING s.run_id
    ), keys AS (
        UPDATE concurrency_keys k SET
            running = (SELECT count(*) FROM concurrency_slots s
                       WHERE s.limit_id = k.limit_id AND s.key = k.key
                         AND s.run_id NOT IN (SELECT run_id FROM stale)),
            waiting = (SELECT count(*) FROM admission_line a
                       WHERE a.limit_id = k.limit_id AND a.key = k.key),
            head_rank = (SELECT min(rank) FROM admission_line a
                         WHERE a.limit_id = k.limit_id AND a.key = k.key)
        WHERE k.limit_id = :id
    )
    UPDATE concurrency_limits SET running = (
        SELECT count(*) FROM concurrency_slots s
        WHERE s.limit_id = :id AND s.run_id NOT IN (SELECT run_id FROM stale)
    ) WHERE id = :id
    """
)
