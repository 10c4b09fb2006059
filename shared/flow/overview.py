"""What the dashboard's Queues page reads of flow control: each queue and each concurrency
limit of an environment with its numbers (:func:`shared.flow.queues.list_queues` and
:func:`shared.flow.limits.list_limits`' items) and, on top, how long runs wait:

- **oldest wait**: the age of the oldest QUEUED run of a queue (``runs.queued_at``), or of
  the oldest entry in a limit's admission line (``admission_line.entered_at``);
- **wait p50 / p95 over the last hour**: ``dequeued_at - queued_at`` of the runs dequeued
  in the last hour, per queue (``coalesce(queue, 'task/' || task_identifier)``) and per
  limit (over the runs holding it, ``runs.concurrency_limits``).

Three grouped queries for the page (on the database's clock), whatever the number of
queues and limits shown.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from reprise_server.shared.flow import limits, queues

WAIT_WINDOW = "1 hour"


@dataclass(frozen=True)
class Waits:
    """Seconds: the oldest waiting run's age (None: nothing waits) and the last hour's
    queue-wait percentiles (None: nothing was dequeued in the hour)."""

    oldest: float | None = None
    p50: float | None = None
    p95: float | None = None
    dequeued: int = 0


@dataclass(frozen=True)
class Row:
    item: dict[str, Any]
    waits: Waits


@dataclass(frozen=True)
class Overview:
    queues: list[Row]
    queue_count: int
    limits: list[Row]
    limit_count: int


def _seconds(value: Any) -> float | None:
    return None if value is None else max(float(value), 0.0)


def queue_waits(session: Session, environment_id: str) -> dict[str, Waits]:
    """Per queue name: its oldest QUEUED run and the last hour's wait percentiles."""
    oldest: dict[str, Any] = dict(session.execute(text(
        """
        SELECT coalesce(queue, 'task/' || task_identifier),
               extract(epoch FROM now() - min(queued_at))
        FROM runs WHERE environment_id = :env AND status = 'QUEUED' AND queued_at IS NOT NULL
        GROUP BY 1
        """
    ), {"env": environment_id}).all())
    hour = {
        name: (p50, p95, n) for name, p50, p95, n in session.execute(text(
            f"""
            SELECT coalesce(queue, 'task/' || task_identifier),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY w),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY w), count(*)
            FROM (SELECT queue, task_identifier,
                         greatest(extract(epoch FROM dequeued_at - queued_at), 0) AS w
                  FROM runs WHERE environment_id = :env AND queued_at IS NOT NULL
                    AND dequeued_at >= now() - interval '{WAIT_WINDOW}') d
            GROUP BY 1
            """
        ), {"env": environment_id})
    }
    return {
        name: Waits(_seconds(oldest.get(name)), *(
            (_seconds(hour[name][0]), _seconds(hour[name][1]), int(hour[name][2]))
            if name in hour else (None, None, 0)
        ))
        for name in set(oldest) | set(hour)
    }


def limit_waits(session: Session, environment_id: str, limit_ids: Collection[str],
                names: Collection[str]) -> dict[str, Waits]:
    """Per limit name: its line's oldest entry and the last hour's wait percentiles of
    the runs holding it."""
    if not names:
        return {}
    oldest: dict[str, Any] = dict(session.execute(text(
        """
        SELECT l.name, extract(epoch FROM now() - min(a.entered_at))
        FROM admission_line a JOIN concurrency_limits l ON l.id = a.limit_id
        WHERE a.limit_id = ANY(:ids) GROUP BY l.name
        """
    ), {"ids": list(limit_ids)}).all())
    hour = {
        name: (p50, p95, n) for name, p50, p95, n in session.execute(text(
            f"""
            SELECT held.name,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY w),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY w), count(*)
            FROM (SELECT concurrency_limits,
                         greatest(extract(epoch FROM dequeued_at - queued_at), 0) AS w
                  FROM runs WHERE environment_id = :env AND queued_at IS NOT NULL
                    AND concurrency_limits && CAST(:names AS varchar[])
                    AND dequeued_at >= now() - interval '{WAIT_WINDOW}') d,
                 unnest(d.concurrency_limits) AS held(name)
            WHERE held.name = ANY(:names)
            GROUP BY 1
            """
        ), {"env": environment_id, "names": list(names)})
    }
    return {
        name: Waits(_seconds(oldest.get(name)), *(
            (_seconds(hour[name][0]), _seconds(hour[name][1]), int(hour[name][2]))
            if name in hour else (None, None, 0)
        ))
        for name in set(oldest) | set(hour)
    }


def read_overview(session: Session, environment_id: str, page: int, per_page: int) -> Overview:
    """A page of the environment's queues and a page of its limits (both by name), with
    their waits."""
    queue_items, queue_count = queues.list_queues(session, environment_id, page, per_page)
    limit_items, limit_count = limits.list_limits(session, environment_id, page, per_page)
    by_queue = queue_waits(session, environment_id) if queue_items else {}
    by_limit = limit_waits(session, environment_id, [i["id"] for i in limit_items],
                           [i["name"] for i in limit_items])
    # A task queue's bound is its task's own limit's total (the wire's V2 queues carry none).
    bounds = limits.current_totals(
        session, environment_id, [i["name"] for i in queue_items if i["type"] == "task"]
    )
    queue_rows = [{**i, "bound": bounds.get(i["name"])} for i in queue_items]
    return Overview(
        [Row(i, by_queue.get(i["name"], Waits())) for i in queue_rows], queue_count,
        [Row(i, by_limit.get(i["name"], Waits())) for i in limit_items], limit_count,
    )
