"""Reads of runs that reflect every accepted command (read-your-writes, see
docs/architecture.md#read-your-writes).

One path for every adapter: authorize, apply the pending commands the caller may see
inline (with the same idempotent function the worker uses), then load. It sits above
both :mod:`shared.runs` and :mod:`shared.commands`. ``applier`` names the process applying
commands inline (``applied_by``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from reprise_server.shared.commands import repository as commands_repo
from reprise_server.shared.commands.models import Command
from reprise_server.shared.commands.service import apply_pending
from reprise_server.shared.errors import NotFound
from reprise_server.shared.packets.service import run_payload
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects.repository import project_ref
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import attempts_repository as attempts_repo
from reprise_server.shared.runs import repository as runs_repo
from reprise_server.shared.runs.listing import Page, RunQuery, list_page
from reprise_server.shared.runs.models import Attempt, Checkpoint, Run
from reprise_server.shared.runs.service import get_run_for
from reprise_server.shared.runs.trace import Trace, build_trace
from reprise_server.shared.schedules import repository as schedules_repo
from reprise_server.shared.schedules.models import Schedule
from reprise_server.shared.versions import repository as versions_repo


@dataclass(frozen=True)
class RunView:
    """A run with what the full run object shows of it: attempts, related runs and the
    schedule whose tick created it (None if none, or deleted since)."""

    run: Run
    attempts: list[Attempt]
    related: dict[str, Any]
    schedule: Schedule | None = None


@dataclass(frozen=True)
class JobRunView:
    """A run as Strait shows it: with its version's ordinal in the environment."""

    run: Run
    job_version: int
    # The payload itself, also when it was offloaded to a packet (Strait inlines payloads).
    payload: Any = None


def visible_run(session: Session, auth: AuthContext, run_id: str, applier: str) -> Run:
    """The run, as the caller may see it, once the commands landing on it are applied.

    Only commands landing in the caller's environment are applied; a run of another
    environment, or one a public token's scopes do not name, is 404.
    """
    apply_pending(session, auth.environment_id, applier, run_id=run_id)
    return get_run_for(session, auth, run_id)


def view_of(session: Session, run: Run) -> RunView:
    # A run that never started has no attempts and no children: skip both queries.
    attempts = attempts_repo.attempts_of(session, [run.id])[run.id] if run.attempt_count else []
    started = run.started_at is not None or run.root_run_id or run.parent_run_id
    related = runs_repo.related_runs(session, run) if started else {}
    schedule = (
        schedules_repo.get_schedule(session, None, run.schedule_id) if run.schedule_id else None
    )
    return RunView(run, attempts, related, schedule)


def read_run(session: Session, auth: AuthContext, run_id: str, applier: str) -> RunView:
    return view_of(session, visible_run(session, auth, run_id, applier))


def read_page(session: Session, auth: AuthContext, query: RunQuery, applier: str) -> Page:
    """A page of the caller's runs, once the environment's pending commands are applied
    (at most ``LIST_APPLY_LIMIT`` of them, oldest first)."""
    apply_pending(session, auth.environment_id, applier)
    return list_page(session, auth.environment_id, query)


def read_project_page(
    session: Session, auth: AuthContext, ref: str, query: RunQuery, applier: str
) -> Page:
    """:func:`read_page` through the project's ref (Trigger.dev's project run list): 404
    unless ``ref`` is the ref of the caller's project. A key lists its own environment's
    runs, as on ``/api/v1/runs``."""
    if project_ref(session, auth.project_id) != ref:
        raise NotFound("Project not found")
    return read_page(session, auth, query, applier)


def read_checkpoints(
    session: Session, auth: AuthContext, run_id: str, applier: str
) -> list[Checkpoint]:
    """A run's checkpoints, oldest first."""
    run = visible_run(session, auth, run_id, applier)
    return attempts_repo.checkpoints_of(session, run.id)


def read_trace(session: Session, auth: AuthContext, run_id: str, applier: str) -> Trace:
    """A run's trace (:mod:`shared.runs.trace`), its log lines as events: for a public
    access token too, as the run's logs and events routes give them (Trigger.dev lets a
    public token list a run's events); it still sees no payload or output."""
    run = visible_run(session, auth, run_id, applier)
    return build_trace(session, run)


def read_history(session: Session, auth: AuthContext, run_id: str, applier: str) -> list[Command]:
    """The commands issued against a run of the caller's environment, oldest first."""
    run = visible_run(session, auth, run_id, applier)
    return commands_repo.commands_of_run(session, run.id)


def job_run_of(session: Session, run: Run) -> JobRunView:
    """Strait's ``job_version``: of the version that executed the run, else of the version it
    will run on (its lock, else the environment's current version if that has the task)."""
    version = run.version or run.locked_version
    if version is None:
        current = catalogue.current_version_with_task(
            session, run.environment_id, run.task_identifier
        )
        version = current[0] if current else None
    ordinal = versions_repo.version_ordinal(session, run.environment_id, version)
    return JobRunView(run, ordinal, run_payload(session, run))


def read_job_run(session: Session, auth: AuthContext, run_id: str, applier: str) -> JobRunView:
    return job_run_of(session, visible_run(session, auth, run_id, applier))


def read_packet(
    session: Session, run_id: str, kind: Literal["payload", "output"]
) -> tuple[Run, Any]:
    """A run and its payload or output, for a signed packet link (the caller checked the
    link). An offloaded payload is its packet's path (:mod:`shared.packets`)."""
    run = runs_repo.get_run(session, None, run_id)
    if run is None:
        raise NotFound("Packet not found or link expired")
    return run, run.payload if kind == "payload" else run.output
