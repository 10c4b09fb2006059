"""What the Overview page reads, for one environment over one window.

Every query is bounded by the window on ``created_at`` (the runs created in it), so it
walks ``ix_runs_env_created`` (counts, per-task numbers) or ``ix_runs_env_status_created``
(failures): the work grows with the window's runs, never with the table.

Failures are the runs that ended in :data:`FAILURES` (FAILED, CRASHED, TIMED_OUT,
SYSTEM_FAILURE: the run's code or its worker failed). EXPIRED runs never ran and CANCELED
ones were stopped on purpose: neither is a failure here. An error group is the window's
failures of one task with one error fingerprint (:mod:`shared.runs.fingerprints`); the
runs filter of :func:`group_filter` selects exactly them, for the group's link and its
bulk replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, extract, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.orm import Session

from reprise_server.shared.overview.models import IgnoredErrorGroup
from reprise_server.shared.runs import filters
from reprise_server.shared.runs.filters import RunFilter
from reprise_server.shared.runs.fingerprints import (
    fingerprint_of,
    message_sql,
    name_sql,
    normalised_text_sql,
)
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import FINAL_STATES, RunStatus

FAILURES = frozenset({RunStatus.FAILED, RunStatus.CRASHED, RunStatus.TIMED_OUT,
                      RunStatus.SYSTEM_FAILURE})


@dataclass(frozen=True)
class Window:
    name: str
    label: str
    span: timedelta
    bucket: timedelta


WINDOWS = {
    window.name: window for window in (
        Window("hour", "Last hour", timedelta(hours=1), timedelta(minutes=1)),
        Window("day", "Last day", timedelta(days=1), timedelta(minutes=15)),
        Window("week", "Last week", timedelta(days=7), timedelta(hours=2)),
    )
}
DEFAULT_WINDOW = "hour"
# The categories of the runs chart, in stacking order: a run's final status, "waiting" (at
# a durable wait: no worker holds it) or "active" (any other status).
CATEGORIES = ("completed", "failed", "canceled", "expired", "waiting", "active")
TASK_LIMIT = 20
GROUP_LIMIT = 200


def window_of(name: str | None) -> Window:
    return WINDOWS.get(name or DEFAULT_WINDOW, WINDOWS[DEFAULT_WINDOW])


@dataclass(frozen=True)
class Bucket:
    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class TaskStats:
    task: str
    runs: int
    finished: int
    failed: int
    wait_p50: float | None  # seconds from queued to dequeued
    wait_p95: float | None
    duration_p50: float | None  # milliseconds, of finished runs
    duration_p95: float | None

    @property
    def failure_rate(self) -> float | None:
        """Failures among the finished runs (None: none finished)."""
        return self.failed / self.finished if self.finished else None


@dataclass(frozen=True)
class ErrorGroup:
    task: str
    name: str
    fingerprint: str
    message: str  # normalised
    count: int
    first_seen: datetime
    last_seen: datetime
    sample_run_id: str
    sample_message: str = ""
    sample_stack: str = ""
    ignored: bool = False


@dataclass(frozen=True)
class Overview:
    window: Window
    since: datetime
    until: datetime
    buckets: list[Bucket]
    tasks: list[TaskStats]
    groups: list[ErrorGroup]
    ignored: list[ErrorGroup] = field(default_factory=list)
    # Ignored groups with no failure in the window (still listed, to unignore).
    ignored_elsewhere: list[IgnoredErrorGroup] = field(default_factory=list)


def _category() -> Any:
    return case(
        (Run.status == RunStatus.COMPLETED, literal("completed")),
        (Run.status.in_(list(FAILURES)), literal("failed")),
        (Run.status == RunStatus.CANCELED, literal("canceled")),
        (Run.status == RunStatus.EXPIRED, literal("expired")),
        (Run.status == RunStatus.WAITING, literal("waiting")),
        else_=literal("active"),
    )


def run_buckets(session: Session, environment_id: str, window: Window, since: datetime,
                until: datetime) -> list[Bucket]:
    """The runs created in each bucket of the window, by final status (or active)."""
    size = window.bucket.total_seconds()
    index = func.floor(extract("epoch", Run.created_at - since) / size).label("i")
    category = _category().label("c")
    rows = session.execute(
        select(index, category, func.count())
        .where(Run.environment_id == environment_id, Run.created_at >= since,
               Run.created_at <= until)
        .group_by(index, category)
    ).all()
    count = int(window.span / window.bucket)
    buckets = [Bucket(since + window.bucket * i, dict.fromkeys(CATEGORIES, 0))
               for i in range(count)]
    for i, name, number in rows:
        buckets[min(int(i), count - 1)].counts[str(name)] += int(number)
    return buckets


def task_stats(session: Session, environment_id: str, since: datetime, until: datetime
               ) -> list[TaskStats]:
    """Per task (the busiest :data:`TASK_LIMIT`): runs, finished, failed, the queue wait
    (``dequeued_at - queued_at``) and the duration's p50 and p95, of finished runs that
    started (one canceled or expired before it ran executed for no time, not for 0 ms)."""
    wait = extract("epoch", Run.dequeued_at - Run.queued_at)
    took = case((and_(Run.finished_at.is_not(None), Run.started_at.is_not(None)),
                 Run.duration_ms))
    runs = func.count().label("runs")
    rows = session.execute(
        select(
            Run.task_identifier,
            runs,
            func.count().filter(Run.status.in_(list(FINAL_STATES))),
            func.count().filter(Run.status.in_(list(FAILURES))),
            func.percentile_cont(0.5).within_group(wait),
            func.percentile_cont(0.95).within_group(wait),
            func.percentile_cont(0.5).within_group(took),
            func.percentile_cont(0.95).within_group(took),
        )
        .where(Run.environment_id == environment_id, Run.created_at >= since,
               Run.created_at <= until)
        .group_by(Run.task_identifier)
        .order_by(runs.desc(), Run.task_identifier)
        .limit(TASK_LIMIT)
    ).all()
    return [TaskStats(str(r[0]), int(r[1]), int(r[2]), int(r[3]), *(
        float(v) if v is not None else None for v in r[4:])) for r in rows]


def group_filter(task: str, fingerprint: str, since: datetime, until: datetime) -> RunFilter:
    """The runs of one error group in the window, as the runs list and bulk actions read
    a filter."""
    return RunFilter(statuses=FAILURES, task_identifiers=(task,), created_from=since,
                     created_to=until, error_fingerprint=fingerprint)


def group_run_ids(session: Session, environment_id: str, group: RunFilter, limit: int
                  ) -> list[str]:
    """The group's run ids, newest first, at most ``limit``."""
    return filters.run_ids_matching(session, environment_id, group, limit)


def _ignored(session: Session, environment_id: str) -> dict[tuple[str, str], IgnoredErrorGroup]:
    rows = session.scalars(select(IgnoredErrorGroup).where(
        IgnoredErrorGroup.environment_id == environment_id
    ).order_by(IgnoredErrorGroup.ignored_at.desc()))
    return {(row.task_identifier, row.fingerprint): row for row in rows}


def error_groups(session: Session, environment_id: str, since: datetime, until: datetime
                 ) -> list[ErrorGroup]:
    """The window's failures grouped by task and error fingerprint, most runs first, each
    with its newest run as the sample."""
    # First by the message as written (failures of one bug often repeat it word for
    # word), so the normalising regular expressions run once per distinct message.
    raw = message_sql(Run.error).label("raw")
    name = name_sql(Run.error).label("name")
    seen = func.coalesce(Run.finished_at, Run.updated_at)
    exact = (
        select(
            Run.task_identifier, name, raw, func.count().label("n"),
            func.min(seen).label("first"), func.max(seen).label("last"),
            func.max(Run.created_at).label("newest_at"),
            func.array_agg(aggregate_order_by(Run.id, Run.created_at.desc()))[1].label(
                "newest"),
        )
        .where(Run.environment_id == environment_id, Run.status.in_(list(FAILURES)),
               Run.created_at >= since, Run.created_at <= until)
        .group_by(Run.task_identifier, name, raw)
        .subquery()
    )
    normalised = (
        select(exact, normalised_text_sql(exact.c.raw).label("message")).subquery()
    )
    n = normalised.c
    fingerprint = fingerprint_of(n.name, n.message).label("fingerprint")
    count = func.sum(n.n).label("count")
    last = func.max(n["last"]).label("last_seen")
    rows = session.execute(
        select(
            n.task_identifier, n.name, fingerprint, func.min(n.message), count,
            func.min(n["first"]), last,
            func.array_agg(aggregate_order_by(n.newest, n.newest_at.desc()))[1],
        )
        .group_by(n.task_identifier, n.name, fingerprint)
        .order_by(count.desc(), last.desc())
        .limit(GROUP_LIMIT)
    ).all()
    samples = _samples(session, [str(r[7]) for r in rows])
    groups = []
    for task, name, fp, message, n, first, seen, sample in rows:
        error = samples.get(str(sample)) or {}
        groups.append(ErrorGroup(
            str(task), str(name), str(fp), str(message), int(n), first, seen, str(sample),
            str(error.get("message") or ""), str(error.get("stackTrace") or ""),
        ))
    return groups


def _samples(session: Session, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not run_ids:
        return {}
    rows = session.execute(select(Run.id, Run.error).where(Run.id.in_(run_ids))).all()
    return {str(rid): error or {} for rid, error in rows}


def read_overview(session: Session, environment_id: str, window: Window, until: datetime
                  ) -> Overview:
    """The page's numbers for the window ending at ``until`` (the database's now)."""
    since = until - window.span
    ignored = _ignored(session, environment_id)
    groups, hidden = [], []
    for group in error_groups(session, environment_id, since, until):
        key = (group.task, group.fingerprint)
        if key in ignored:
            hidden.append(replace(group, ignored=True))
            ignored.pop(key)
        else:
            groups.append(group)
    return Overview(
        window, since, until,
        run_buckets(session, environment_id, window, since, until),
        task_stats(session, environment_id, since, until),
        groups, hidden, list(ignored.values()),
    )


def ignore_group(session: Session, environment_id: str, task: str, fingerprint: str,
                 error_name: str, message: str) -> None:
    """Hide the group in the environment (again: nothing changes)."""
    session.execute(insert(IgnoredErrorGroup).values(
        environment_id=environment_id, task_identifier=task[:128],
        fingerprint=fingerprint[:16], error_name=error_name[:255], message=message,
    ).on_conflict_do_nothing())


def unignore_group(session: Session, environment_id: str, task: str, fingerprint: str) -> None:
    session.execute(delete(IgnoredErrorGroup).where(and_(
        IgnoredErrorGroup.environment_id == environment_id,
        IgnoredErrorGroup.task_identifier == task,
        IgnoredErrorGroup.fingerprint == fingerprint,
    )))
