"""The SQL behind the scrape-time gauges: one grouped query per store concept."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprise_server.shared.commands.models import Command, CommandStatus
from reprise_server.shared.projects.models import Environment, Project
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
