"""The tasks of an environment, as the dashboard's Tasks page shows them: the catalogue of
its current worker version (the version registered most recently), each task with the
options it declares, its last runs and its failure rate over the last 24 hours. Three
queries whatever the number of tasks: the catalogue, the last runs of every task (one
index walk per task, ``ix_runs_env_task_created``), and the day's counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import String

from reprise_server.shared.overview.queries import FAILURES
from reprise_server.shared.projects.models import Environment, VersionTask
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import FINAL_STATES, RunStatus
from reprise_server.shared.versions import repository as versions_repo

RECENT_RUNS = 5
FAILURE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class RecentRun:
    id: str
    status: RunStatus
    created_at: datetime


@dataclass(frozen=True)
class DeclaredLimit:
    name: str
    total: int | None
    per_key: int | None


@dataclass
class TaskSummary:
    """A task of the current version with what it declares (``options`` as registered)."""

    id: str
    options: dict[str, Any]
    default_ttl_seconds: int | None
    recent: list[RecentRun] = field(default_factory=list)
    finished: int = 0  # finished runs created in the last 24 h
    failed: int = 0  # of those, failures (FAILED, CRASHED, TIMED_OUT, SYSTEM_FAILURE)

    @property
    def queue(self) -> str:
        return str(self.options.get("queue") or f"task/{self.id}")

    @property
    def max_attempts(self) -> int | None:
        value = self.options.get("max_attempts")
        return int(value) if value is not None else None

    @property
    def ttl(self) -> str | None:
        """The task's declared TTL (None: the environment's default applies, if any)."""
        if self.options.get("ttl") not in (None, ""):
            return str(self.options["ttl"])
        return None

    @property
    def limits(self) -> list[DeclaredLimit]:
        return [
            DeclaredLimit(str(item.get("name")), item.get("total"), item.get("per_key"))
            for item in self.options.get("concurrency") or ()
            if isinstance(item, dict)
        ]

    @property
    def cron(self) -> str | None:
        return str(self.options["cron"]) if self.options.get("cron") else None

    @property
    def failure_rate(self) -> float | None:
        """Failures among the day's finished runs; None without any."""
        return self.failed / self.finished if self.finished else None


@dataclass(frozen=True)
class TaskCatalogue:
    version: str | None
    registered_at: datetime | None
    tasks: list[TaskSummary]


_RECENT = text(
    "SELECT t.task, r.id, r.status, r.created_at "
    "FROM unnest(:tasks) AS t(task) CROSS JOIN LATERAL ("
    " SELECT id, status, created_at FROM runs"
    " WHERE environment_id = :environment_id AND task_identifier = t.task"
    " ORDER BY created_at DESC LIMIT :n) AS r "
    "ORDER BY t.task, r.created_at DESC"
).bindparams(bindparam("tasks", type_=ARRAY(String())))


def read_tasks(session: Session, environment_id: str, now: datetime) -> TaskCatalogue:
    """Every task of the environment's current version, by id (empty without a version)."""
    current = versions_repo.current_registrations(session, [environment_id]).get(environment_id)
    if current is None:
        return TaskCatalogue(None, None, [])
    default_ttl = session.scalar(
        select(Environment.default_ttl_seconds).where(Environment.id == environment_id))
    rows = session.execute(
        select(VersionTask.task_identifier, VersionTask.options)
        .where(VersionTask.worker_version_id == current.id)
        .order_by(VersionTask.task_identifier)
    ).all()
    tasks = {task_id: TaskSummary(task_id, dict(options or {}), default_ttl)
             for task_id, options in rows}
    if tasks:
        for task_id, run_id, status, created_at in session.execute(
            _RECENT, {"tasks": list(tasks), "environment_id": environment_id, "n": RECENT_RUNS}
        ):
            tasks[task_id].recent.append(RecentRun(run_id, RunStatus(status), created_at))
        finished = [str(s) for s in FINAL_STATES]
        failures = [str(s) for s in FAILURES]
        counts = session.execute(
            select(
                Run.task_identifier,
                func.count().filter(Run.status.in_(finished)),
                func.count().filter(Run.status.in_(failures)),
            )
            .where(Run.environment_id == environment_id,
                   Run.created_at >= now - FAILURE_WINDOW,
                   Run.task_identifier.in_(list(tasks)))
            .group_by(Run.task_identifier)
        )
        for task_id, done, failed in counts:
            tasks[task_id].finished, tasks[task_id].failed = int(done), int(failed)
    return TaskCatalogue(current.version, current.registered_at, list(tasks.values()))


def task_in_current_version(session: Session, environment_id: str, task_id: str
                            ) -> TaskSummary | None:
    """The task as the environment's current version declares it, or None."""
    current = versions_repo.current_registrations(session, [environment_id]).get(environment_id)
    if current is None:
        return None
    options = session.scalar(
        select(VersionTask.options).where(VersionTask.worker_version_id == current.id,
                                          VersionTask.task_identifier == task_id))
    if options is None:
        return None
    return TaskSummary(task_id, dict(options), None)


def last_payload(session: Session, environment_id: str, task_id: str) -> Any:
    """The JSON payload of the task's newest run in the environment ({} without one, or
    when that payload is not plain JSON: a packet, text)."""
    row = session.execute(
        select(Run.payload, Run.payload_type)
        .where(Run.environment_id == environment_id, Run.task_identifier == task_id)
        .order_by(Run.created_at.desc())
        .limit(1)
    ).first()
    if row is None or row[1] != "application/json":
        return {}
    return row[0] if row[0] is not None else {}
