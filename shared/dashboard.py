"""What the dashboard reads beyond the REST API's views, and the run handle its actions
need: the dashboard acts through the same services as the API (``accept_replay``,
``accept_reschedule``, ``cancel_run``, :mod:`shared.bulk.service`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reprise_server.shared.access.repository import RunHead
from reprise_server.shared.commands import repository as commands_repo
from reprise_server.shared.commands.models import Command
from reprise_server.shared.db import db_now
from reprise_server.shared.durable import service as durable
from reprise_server.shared.durable.models import RunStep, Waitpoint, WaitpointBlock
from reprise_server.shared.errors import RunNotFound
from reprise_server.shared.flow import queues as flow_queues
from reprise_server.shared.flow.queues import waiting_reason
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects import repository as projects_repo
from reprise_server.shared.projects.models import Environment
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.reads import RunView, read_run
from reprise_server.shared.runs import attempts_repository as attempts_repo
from reprise_server.shared.runs import repository as runs_repo
from reprise_server.shared.runs.models import Checkpoint, Run
from reprise_server.shared.runs.states import FAILED_LIKE, RunStatus
from reprise_server.shared.runs.trace import (
    Span,
    Trace,
    attempts_ms,
    build_trace,
    resumed_after,
    wait_words,
)


@dataclass(frozen=True)
class WaitingFor:
    """What a WAITING run waits for (its recorded wait): a time, child runs or a token."""

    kind: str  # "datetime" | "run" | "token"
    name: str
    position: int
    until: datetime | None = None
    # A child wait: the children (id, task, status), in the order they were triggered.
    children: list[Run] = field(default_factory=list)
    batch: bool = False
    token: Waitpoint | None = None
    # A token wait with a timeout of its own (``wait_for_token(..., timeout=)``).
    deadline: datetime | None = None


def _moment(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def runs_waiting_on(session: Session, waitpoint_ids: list[str]) -> dict[str, list[str]]:
    """The runs blocked on each of these waitpoints (one query for a page of tokens)."""
    found: dict[str, list[str]] = {}
    if not waitpoint_ids:
        return found
    rows = session.execute(
        select(WaitpointBlock.waitpoint_id, WaitpointBlock.run_id)
        .where(WaitpointBlock.waitpoint_id.in_(waitpoint_ids))
        .order_by(WaitpointBlock.created_at, WaitpointBlock.run_id)
    )
    for waitpoint_id, run_id in rows:
        found.setdefault(waitpoint_id, []).append(run_id)
    return found


def waiting_for(session: Session, run: Run) -> WaitingFor | None:
    """What ``run`` waits for, if it is WAITING at a recorded wait."""
    if run.status is not RunStatus.WAITING:
        return None
    detail = durable.waiting_for(session, run.id)
    if detail is None:
        return None
    kind = str(detail.get("type", ""))
    found = WaitingFor(kind, str(detail.get("name", "")), int(detail.get("position", 0)),
                       until=_moment(detail.get("until")), batch=bool(detail.get("batch")),
                       deadline=_moment(detail.get("deadline")))
    if kind == "run":
        ids = [str(i) for i in detail.get("runs") or []]
        rows = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(ids)))}
        found.children.extend(rows[i] for i in ids if i in rows)
    elif kind == "token" and detail.get("token"):
        found = WaitingFor(kind, found.name, found.position, deadline=found.deadline,
                           token=session.get(Waitpoint, str(detail["token"])))
    return found


@dataclass(frozen=True)
class RunPage:
    view: RunView
    checkpoints: list[Checkpoint]
    commands: list[Command]
    replayed_from: Run | None
    replays: list[Run]
    environments: dict[str, Environment]
    # Why the run, QUEUED or RETRYING, has not started (None: nothing holds it back).
    waiting_reason: str | None = None
    # The run's trace without its log lines (the logs panel reads those): the waterfall.
    trace: Trace | None = None
    # The run's durable record (steps and waits in call order), and what it waits for.
    steps: list[RunStep] = field(default_factory=list)
    waiting_for: WaitingFor | None = None
    # Attempts that resumed the run after a wait, with that wait's name, by number.
    resumes: dict[int, str] = field(default_factory=dict)

    def checkpoints_by_attempt(self) -> list[tuple[int, list[Checkpoint]]]:
        """The checkpoints grouped by the attempt that saved them, in attempt order."""
        groups: dict[int, list[Checkpoint]] = {}
        for cp in self.checkpoints:
            groups.setdefault(cp.attempt_number, []).append(cp)
        return sorted(groups.items())

    def step_choices(self) -> list[tuple[str, str]]:
        """The replay dialog's "start from a step": (the ``fromStep`` value, its label) for
        each recorded step and wait, by position (a name called again is ``name#2``)."""
        seen: dict[str, int] = {}
        choices = []
        for step in self.steps:
            seen[step.name] = seen.get(step.name, 0) + 1
            nth = seen[step.name]
            kind = "Wait" if step.kind == "wait" else "Step"
            label = f"{kind} #{step.position} {step.name}" + (f" (call {nth})" if nth > 1 else "")
            choices.append((str(step.position), label))
        return choices

    def waterfall(self) -> list[WaterfallRow]:
        return waterfall_rows(self.trace) if self.trace is not None else []


@dataclass(frozen=True)
class WaterfallRow:
    span: Span
    depth: int
    # Where its bar starts and how wide it is, in percent of the trace's span of time.
    offset: float
    width: float
    duration_ms: float


def waterfall_rows(trace: Trace) -> list[WaterfallRow]:
    """The trace's spans as the waterfall draws them: depth first, each bar placed on the
    time axis from the run's creation to the end of its last span (now, if one is open)."""
    start = trace.root.start
    total = max((trace.end() - start).total_seconds(), 0.001)
    rows = []
    for span, depth in trace.walk():
        offset = (span.start - start).total_seconds() / total * 100
        width = (span.finish(trace.now) - span.start).total_seconds() / total * 100
        rows.append(WaterfallRow(span, depth, round(min(max(offset, 0.0), 100.0), 3),
                                 round(min(max(width, 0.0), 100.0 - offset), 3),
                                 span.duration_ms(trace.now)))
    return rows


def read_run_page(session: Session, auth: AuthContext, run_id: str, applier: str) -> RunPage:
    """The run (read-your-writes, as the API reads it) with its checkpoints, command
    history and lineage across the project's environments."""
    view = read_run(session, auth, run_id, applier)
    run = view.run
    source = (runs_repo.get_run_in_project(session, auth.project_id, run.replayed_from)
              if run.replayed_from else None)
    envs = {e.id: e for e in projects_repo.list_environments(session, auth.project_id)}
    checkpoints = attempts_repo.checkpoints_of(session, run.id)
    steps = durable.steps_of(session, run.id)
    trace = build_trace(session, run, with_logs=False, attempts=view.attempts,
                        checkpoints=checkpoints, steps=steps)
    return RunPage(
        view,
        checkpoints,
        commands_repo.commands_of_run(session, run.id),
        source,
        runs_repo.replays_of(session, auth.project_id, run.id),
        envs,
        waiting_reason(session, run),
        trace,
        steps,
        waiting_for(session, run),
        resumed_after(view.attempts, steps),
    )


def waiting_reasons(session: Session, runs: list[Run]) -> dict[str, str]:
    """Why each held-back run of a runs-list page waits, by run id (batched: see
    :func:`shared.flow.queues.waiting_reasons`)."""
    reasons = flow_queues.waiting_reasons(session, runs)
    reasons.update(durable_waits(session, runs))
    return reasons


def durable_waits(session: Session, runs: list[Run]) -> dict[str, str]:
    """What each WAITING run of a page waits for, in words, by run id (one query: the
    open waits of their records)."""
    ids = [run.id for run in runs if run.status is RunStatus.WAITING]
    if not ids:
        return {}
    rows = session.execute(
        select(RunStep.run_id, RunStep.detail)
        .where(RunStep.run_id.in_(ids), RunStep.kind == "wait", RunStep.status == "WAITING")
        .order_by(RunStep.run_id, RunStep.position)
    )
    # "Wait for token …" reads "Waiting: for token …" in the list.
    return {run_id: wait_words(detail).removeprefix("Wait ") for run_id, detail in rows}


@dataclass(frozen=True)
class RunDuration:
    """A runs-list row's Duration: how long the run executed, as its page counts it."""

    ms: float
    # An attempt is still executing: the figure grows.
    running: bool


def run_durations(session: Session, runs: list[Run], now: datetime) -> dict[str, RunDuration]:
    """Each started run's execution time by run id, from its attempts (one query for the
    page): a run canceled mid-execution counts until the cancel rather than the zero its
    worker never got to record; the usage the worker recorded wins if it is more."""
    started = [run for run in runs if run.started_at is not None]
    attempts = attempts_repo.attempts_of(session, [run.id for run in started])
    found = {}
    for run in started:
        ms, running = attempts_ms(run, attempts[run.id], now)
        found[run.id] = RunDuration(max(float(run.duration_ms or 0), ms), running)
    return found


@dataclass(frozen=True)
class ErrorSummary:
    """A failed run's error as one runs-list cell: its name and the first line of its
    message (the full error is on the run's page)."""

    name: str
    first_line: str


def error_summaries(runs: list[Run]) -> dict[str, ErrorSummary]:
    """The error of each run of the page that failed (failed, crashed, timed out, expired,
    system failure), by run id."""
    found = {}
    for run in runs:
        if run.status not in FAILED_LIKE or not isinstance(run.error, dict):
            continue
        message = str(run.error.get("message") or "").strip()
        found[run.id] = ErrorSummary(str(run.error.get("name") or "Error"),
                                     message.splitlines()[0] if message else "")
    return found


def run_head(session: Session, auth: AuthContext, run_id: str, *, lock: bool = False) -> RunHead:
    """A run of the caller's environment as the accept of a replay or reschedule takes it
    (``lock``: its row locked until commit, as a reschedule needs)."""
    run = (runs_repo.lock_run(session, run_id, auth.environment_id) if lock
           else runs_repo.get_run(session, auth.environment_id, run_id))
    if run is None or run.environment_id != auth.environment_id:
        raise RunNotFound()
    known = catalogue.task_known_in_project(session, auth.project_id, run.task_identifier)
    return RunHead(run.id, run.task_identifier, run.status, db_now(session), known, locked=lock)
