"""Queues: the lines runs wait in (a task's own, ``task/<taskId>``, or a named one), and
their pause. ``QueueItem`` (v2) of ``@trigger.dev/core`` is the wire shape.

A paused queue admits nothing: a run entering it is parked (``admission = 'paused'``), a
run delivered while it is paused is parked by the worker instead of starting, and runs
executing finish. Resuming puts its parked runs back in order (the first batch at once,
the rest by the control sweep).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NoReturn

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from reprise_server.shared.errors import InvalidInput, NotFound
from reprise_server.shared.flow.models import Queue
from reprise_server.shared.runs import lifecycle

RESUME_BATCH = 1000
QUEUE_TYPES = ("id", "task", "custom")


def _counts(session: Session, environment_id: str) -> dict[str, tuple[int, int]]:
    """Per queue: runs running (claimed or executing) and queued."""
    rows = session.execute(text(
        """
        SELECT coalesce(queue, 'task/' || task_identifier),
               count(*) FILTER (WHERE status IN ('DEQUEUED', 'EXECUTING')),
               count(*) FILTER (WHERE status = 'QUEUED')
        FROM runs WHERE environment_id = :env AND status IN ('QUEUED', 'DEQUEUED', 'EXECUTING')
        GROUP BY 1
        """
    ), {"env": environment_id})
    return {name: (int(running), int(queued)) for name, running, queued in rows}


def queue_item(queue: Queue, counts: tuple[int, int]) -> dict[str, Any]:
    """``QueueItem`` in its V2 shape: a queue is only the line runs wait in; concurrency
    is a limit's (``concurrencyLimits``), so ``concurrencyLimit`` is always null."""
    return {
        "id": queue.id,
        "name": queue.name,
        "type": queue.type,
        "running": counts[0],
        "queued": counts[1],
        "paused": queue.paused,
        "concurrencyLimit": None,
        "version": "V2",
    }


def list_queues(
    session: Session, environment_id: str, page: int, per_page: int
) -> tuple[list[dict[str, Any]], int]:
    where = Queue.environment_id == environment_id
    count = session.scalar(select(func.count()).select_from(Queue).where(where)) or 0
    queues = session.scalars(
        select(Queue).where(where).order_by(Queue.name)
        .offset((page - 1) * per_page).limit(per_page)
    ).all()
    counts = _counts(session, environment_id)
    return [queue_item(q, counts.get(q.name, (0, 0))) for q in queues], count


def find_queue(session: Session, environment_id: str, value: str, kind: str,
               *, lock: bool = False) -> Queue:
    """A queue by id, or by type and name (a task queue by its task id or ``task/<id>``)."""
    if kind not in QUEUE_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(QUEUE_TYPES)} (got {kind!r})")
    query = select(Queue).where(Queue.environment_id == environment_id)
    if kind == "id":
        query = query.where(Queue.id == value)
    else:
        name = value if kind == "custom" or value.startswith("task/") else f"task/{value}"
        query = query.where(Queue.name == name, Queue.type == kind)
    queue = session.scalars(query.with_for_update() if lock else query).first()
    if queue is None:
        raise NotFound("Queue not found")
    return queue


def retrieve(session: Session, environment_id: str, queue: Queue) -> dict[str, Any]:
    counts = _counts(session, environment_id).get(queue.name, (0, 0))
    return queue_item(queue, counts)


def set_paused(session: Session, environment_id: str, value: str, kind: str, paused: bool
               ) -> dict[str, Any]:
    queue = find_queue(session, environment_id, value, kind, lock=True)
    session.execute(update(Queue).where(
        Queue.environment_id == environment_id, Queue.name == queue.name
    ).values(paused=paused, paused_at=func.now() if paused else None))
    if not paused:
        lifecycle.resume_parked(session, environment_id, queue.name, RESUME_BATCH)
    session.expire(queue)
    return retrieve(session, environment_id, queue)


def resume_left_behind(session: Session, batch: int = RESUME_BATCH) -> int:
    """The sweep's part: runs still parked in queues no longer paused (a resume finishes
    its first batch at once; the rest, or one a crash cut short, here)."""
    rows = session.execute(text(
        """
        SELECT DISTINCT r.environment_id, coalesce(r.queue, 'task/' || r.task_identifier)
        FROM runs r
        WHERE r.admission = 'paused' AND NOT EXISTS (
            SELECT 1 FROM queues q WHERE q.environment_id = r.environment_id
              AND q.name = coalesce(r.queue, 'task/' || r.task_identifier) AND q.paused)
        LIMIT 100
        """
    )).all()
    return sum(lifecycle.resume_parked(session, env, name, batch) for env, name in rows)


def legacy_limit(session: Session, environment_id: str, value: str, kind: str) -> NoReturn:
    """The queue-level ``concurrency/override`` and ``reset``: on queues of this model (V2)
    a queue has no limit of its own, so both are refused (400, saying where limits live)
    once the queue is found (404 otherwise)."""
    queue = find_queue(session, environment_id, value, kind)
    limit = f"task/{queue.name[5:]}" if queue.type == "task" else "<name>"
    raise InvalidInput(
        f"queue {queue.name!r} has no concurrency limit of its own: limits are declared "
        "with @task(concurrency=...) or concurrency_limit(...) and changed with "
        f"/api/v1/concurrency-limits/{limit}/override"
    )


def _line_reason(rows: list[Any]) -> str:
    reasons = []
    for limit, paused, running, total, key, key_running, cap in rows:
        if paused:
            reasons.append(f"limit `{limit}` paused")
        elif total is not None and running >= total:
            reasons.append(f"{running} of {total} running under limit `{limit}`")
        elif cap is not None and key_running >= cap:
            who = f"key `{key}`" if key else "runs without a key"
            reasons.append(f"{key_running} of {cap} running for {who} under limit `{limit}`")
    return "; ".join(reasons) or "waiting for a concurrency slot"


_LINE = """
    SELECT a.run_id, l.name, l.paused, l.running, coalesce(l.total_override, l.total_base),
           k.key, k.running, k.cap
    FROM admission_line a JOIN concurrency_limits l ON l.id = a.limit_id
    JOIN concurrency_keys k ON k.limit_id = a.limit_id AND k.key = a.key
    WHERE a.run_id = ANY(:run_ids) ORDER BY a.run_id, l.name
"""


def _undeclared_reason(queue: str) -> str:
    return (f"no worker version declares queue `{queue}`: only a worker started "
            f"with --queues {queue} runs it")


def _held_reason(run: Any) -> str | None:
    """The reason read from the run's own row (None: the line or the queues must say)."""
    if run.admission == "paused":
        return f"queue `{run.queue or f'task/{run.task_identifier}'}` paused"
    if run.admission == "backoff":
        return "retry backoff, then a concurrency slot"
    return None


def waiting_reason(session: Session, run: Any) -> str | None:
    """Why a queued run has not started, in words a person reads on its page and row
    ("3 of 3 running under limit `openai`", "queue `emails` paused", "no worker version
    declares queue `x`"); None when nothing holds it back."""
    return waiting_reasons(session, [run]).get(run.id)


def waiting_reasons(session: Session, runs: Collection[Any]) -> dict[str, str]:
    """:func:`waiting_reason` of many runs (a page of the runs list) by run id, only for
    those held back. The row's ``admission`` says which are: at most one query over the
    admission line (the runs waiting in it) and one over the queues (runs of a named queue
    not held back by a limit), whatever the number of runs."""
    reasons: dict[str, str] = {}
    in_line: list[str] = []
    named: dict[str, list[Any]] = {}
    for run in runs:
        if run.status not in ("QUEUED", "RETRYING"):
            continue
        held = _held_reason(run)
        if held is not None:
            reasons[run.id] = held
        elif run.admission == "waiting":
            in_line.append(run.id)
        elif run.queue:
            named.setdefault(run.environment_id, []).append(run)
    if in_line:
        rows: dict[str, list[Any]] = {run_id: [] for run_id in in_line}
        for run_id, *row in session.execute(text(_LINE), {"run_ids": in_line}):
            rows[run_id].append(row)
        reasons.update({run_id: _line_reason(found) for run_id, found in rows.items()})
    for environment_id, waiting in named.items():
        declared = set(session.scalars(select(Queue.name).where(
            Queue.environment_id == environment_id,
            Queue.name.in_({run.queue for run in waiting}),
        )))
        reasons.update({run.id: _undeclared_reason(run.queue) for run in waiting
                        if run.queue not in declared})
    return reasons
