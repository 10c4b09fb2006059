"""The SQL behind the scrape-time gauges: one grouped query per store concept."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from reprise_server.shared.commands.models import Command, CommandStatus
from reprise_server.shared.durable.models import Waitpoint
from reprise_server.shared.projects.models import Environment, Project
from reprise_server.shared.realtime.models import RealtimeListener
from reprise_server.shared.runs.models import Run


@dataclass(frozen=True)
class RunCount:
    project: str
    environment: str
    task: str
    status: str
    count: int


@dataclass(frozen=True)
class PendingCommands:
    kind: str
    count: int
    oldest_age_seconds: float


def count_runs(session: Session) -> list[RunCount]:
    """Runs by project, environment, task and status.

    Aggregated first, then joined to the (small) projects and environments tables, so the
    cost is one pass over ``runs`` whatever the number of environments.
    """
    counts = (
        select(
            Run.environment_id,
            Run.task_identifier,
            Run.status,
            func.count().label("n"),
        )
        .group_by(Run.environment_id, Run.task_identifier, Run.status)
        .subquery()
    )
    rows = session.execute(
        select(
            Project.slug, Environment.slug, counts.c.task_identifier, counts.c.status, counts.c.n
        )
        .join(Environment, Environment.id == counts.c.environment_id)
        .join(Project, Project.id == Environment.project_id)
    )
    return [RunCount(p, e, t, s, int(n)) for p, e, t, s, n in rows]


@dataclass(frozen=True)
class WaitingTokens:
    project: str
    environment: str
    count: int


def realtime_listeners(session: Session) -> int:
    """The api processes registered as listening for run changes (not expired): while
    there is one, every run write sends a notification."""
    return int(session.scalar(
        select(func.count()).where(RealtimeListener.expires_at > func.now())
    ) or 0)


def waiting_tokens(session: Session) -> list[WaitingTokens]:
    """WAITING waitpoint tokens by project and environment (environments with none are
    absent), aggregated before the join as :func:`count_runs`."""
    counts = (
        select(Waitpoint.environment_id, func.count().label("n"))
        .where(Waitpoint.type == "TOKEN", Waitpoint.status == "WAITING")
        .group_by(Waitpoint.environment_id)
        .subquery()
    )
    rows = session.execute(
        select(Project.slug, Environment.slug, counts.c.n)
        .join(Environment, Environment.id == counts.c.environment_id)
        .join(Project, Project.id == Environment.project_id)
    )
    return [WaitingTokens(p, e, int(n)) for p, e, n in rows]


def pending_commands(session: Session) -> list[PendingCommands]:
    """Pending commands by kind with the age of the oldest (the apply lag), on the
    database's clock; walks the partial index of pending commands."""
    rows = session.execute(
        select(
            Command.kind,
            func.count(),
            func.extract("epoch", func.now() - func.min(Command.created_at)),
        )
        .where(Command.status == CommandStatus.PENDING.value)
        .group_by(Command.kind)
    )
    return [PendingCommands(kind, int(n), max(float(age or 0.0), 0.0)) for kind, n, age in rows]


@dataclass(frozen=True)
class FlowGauge:
    """One concurrency limit's or queue's numbers: ``bound`` None when unbounded,
    ``oldest_wait_seconds`` 0 when nothing waits."""

    project: str
    environment: str
    name: str
    running: int
    queued: int
    bound: int | None
    paused: bool
    oldest_wait_seconds: float


def flow_limits(session: Session) -> list[FlowGauge]:
    """Every concurrency limit: its slots held (the limit's own counter), the runs in its
    line (its keys' counters), its total bound and the age of its line's oldest entry.
    One pass over the keys and one over the line, grouped, then joined to the limits."""
    rows = session.execute(text(
        """
        SELECT p.slug, e.slug, l.name, l.running, coalesce(w.queued, 0),
               coalesce(l.total_override, l.total_base), l.paused,
               coalesce(extract(epoch FROM now() - o.oldest), 0)
        FROM concurrency_limits l
        JOIN environments e ON e.id = l.environment_id
        JOIN projects p ON p.id = e.project_id
        LEFT JOIN (SELECT limit_id, sum(waiting) AS queued FROM concurrency_keys
                   GROUP BY limit_id) w ON w.limit_id = l.id
        LEFT JOIN (SELECT limit_id, min(entered_at) AS oldest FROM admission_line
                   GROUP BY limit_id) o ON o.limit_id = l.id
        """
    ))
    return [FlowGauge(p, e, n, int(r), int(q), None if b is None else int(b), bool(z),
                      max(float(age or 0.0), 0.0))
            for p, e, n, r, q, b, z, age in rows]


def flow_queues(session: Session) -> list[FlowGauge]:
    """Every queue: its runs claimed or executing, its QUEUED runs and the oldest one's
    age (one grouped pass over the active runs), its bound (a task queue's: its task's own
    limit's total; a named queue has none) and whether it is paused."""
    rows = session.execute(text(
        """
        SELECT p.slug, e.slug, q.name, coalesce(c.running, 0), coalesce(c.queued, 0),
               coalesce(l.total_override, l.total_base), q.paused,
               coalesce(extract(epoch FROM now() - c.oldest), 0)
        FROM queues q
        JOIN environments e ON e.id = q.environment_id
        JOIN projects p ON p.id = e.project_id
        LEFT JOIN concurrency_limits l
               ON q.type = 'task' AND l.environment_id = q.environment_id AND l.name = q.name
        LEFT JOIN (SELECT environment_id, coalesce(queue, 'task/' || task_identifier) AS name,
                          count(*) FILTER (WHERE status IN ('DEQUEUED', 'EXECUTING')) AS running,
                          count(*) FILTER (WHERE status = 'QUEUED') AS queued,
                          min(queued_at) FILTER (WHERE status = 'QUEUED') AS oldest
                   FROM runs WHERE status IN ('QUEUED', 'DEQUEUED', 'EXECUTING')
                   GROUP BY 1, 2) c
               ON c.environment_id = q.environment_id AND c.name = q.name
        """
    ))
    return [FlowGauge(p, e, n, int(r), int(qd), None if b is None else int(b), bool(z),
                      max(float(age or 0.0), 0.0))
            for p, e, n, r, qd, b, z, age in rows]
