"""Schedule rules: create, update, (de)activate, delete, list, declarative sync, and the
beat sweep that fires due ticks (one run per tick, even with two beats; a schedule that
missed ticks runs the latest one once). Why and how: docs/architecture.md#schedules.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared.db import db_now
from reprise_server.shared.durations import iso
from reprise_server.shared.errors import BadRequest, Conflict, NotFound, RepriseError
from reprise_server.shared.ids import TASK_ID_RE, new_id
from reprise_server.shared.projects import catalogue
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import repository as runs_repo
from reprise_server.shared.runs.options import RunOptions
from reprise_server.shared.runs.service import NewRun, create_run
from reprise_server.shared.schedules import repository as repo
from reprise_server.shared.schedules.cron import Cron, InvalidCron
from reprise_server.shared.schedules.models import Schedule, ScheduleType
from reprise_server.shared.schedules.schemas import CreateScheduleRequest, UpdateScheduleRequest
from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.schedules")

DEFAULT_BATCH_SIZE = 500
# ``upcoming`` in the scheduled payload: Trigger.dev's engine sends the next ten ticks.
UPCOMING_IN_PAYLOAD = 10
# The schedule object's ``nextRuns`` (a Reprise extra; ``nextRun`` is the first of them).
NEXT_RUNS_SHOWN = 5
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100


class ScheduleNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Schedule not found")


def _task_must_exist(session: Session, project_id: str, task_id: str) -> None:
    if not TASK_ID_RE.match(task_id):
        raise BadRequest("task must be 1 to 128 letters, digits or . _ - : /")
    if not catalogue.task_known_in_project(session, project_id, task_id):
        raise NotFound(f"Task not found: no worker has registered a task '{task_id}'")


def _imperative(schedule: Schedule, action: str) -> None:
    if schedule.type is ScheduleType.DECLARATIVE:
        raise BadRequest(
            f"Cannot {action} a declarative schedule: it follows @task(cron=…) of the "
            f"task '{schedule.task_identifier}' in the current worker version"
        )


def new_cron(expression: str, timezone: str | None) -> Cron:
    """A cron a schedule may be given (created, replaced or declared): parsable, and never
    ticking more often than the sweep that fires schedules runs; such ticks would coalesce
    into one run per sweep, so the schedule would not run when it says. 400 naming why."""
    cron = Cron.parse(expression, timezone)
    interval = get_settings().sweep_interval_seconds
    gap = cron.shortest_gap()
    if gap is not None and gap < interval:
        raise InvalidCron(
            cron.expression,
            f"it ticks every {gap:g} s, more often than the scheduler's sweep runs (every "
            f"{interval:g} s, REPRISE_SWEEP_INTERVAL_SECONDS); ticks must be at least "
            f"{interval:g} s apart",
        )
    return cron


def create_schedule(session: Session, auth: AuthContext, body: CreateScheduleRequest) -> Schedule:
    """A new imperative schedule in the caller's environment; with a deduplication key
    already used there, that schedule updated instead. 400 for a bad cron or timezone,
    404 for a task no version of the project registers."""
    cron = new_cron(body.cron, body.timezone)
    _task_must_exist(session, auth.project_id, body.task)
    if body.deduplication_key is not None:
        existing = repo.find_by_key(
            session, auth.environment_id, ScheduleType.IMPERATIVE, body.deduplication_key,
            lock=True,
        )
        if existing is not None:
            return _replace(session, existing, body, cron)
    now = db_now(session)
    values: dict[str, Any] = {
        "id": new_id("sched"),
        "project_id": auth.project_id,
        "environment_id": auth.environment_id,
        "task_identifier": body.task,
        "type": ScheduleType.IMPERATIVE,
        "cron": cron.expression,
        "timezone": cron.timezone,
        "external_id": body.external_id,
        "deduplication_key": body.deduplication_key or new_id("dedup"),
        "user_provided_deduplication_key": body.deduplication_key is not None,
        "active": True,
        "next_tick_at": cron.next_after(now),
        "created_at": now,
        "updated_at": now,
    }
    created = repo.insert_schedule(session, values)
    if created is None:  # a concurrent create with the same key won: update that one
        winner = repo.find_by_key(
            session, auth.environment_id, ScheduleType.IMPERATIVE, values["deduplication_key"],
            lock=True,
        )
        if winner is None:
            # Deleted again meanwhile: 409, which the SDK retries.
            raise Conflict("The schedule changed while it was created, please try again")
        return _replace(session, winner, body, cron)
    schedule = repo.get_schedule(session, auth.environment_id, created)
    assert schedule is not None
    return schedule


def _replace(
    session: Session, schedule: Schedule, body: UpdateScheduleRequest, cron: Cron
) -> Schedule:
    changed_timing = (cron.expression, cron.timezone) != (schedule.cron, schedule.timezone)
    values: dict[str, Any] = {
        "task_identifier": body.task,
        "cron": cron.expression,
        "timezone": cron.timezone,
        "external_id": body.external_id,
    }
    if changed_timing and schedule.active:
        values["next_tick_at"] = cron.next_after(db_now(session))
    repo.update_schedule(session, schedule.id, **values)
    updated = repo.get_schedule(session, None, schedule.id)
    assert updated is not None
    return updated


def get_schedule(
    session: Session, auth: AuthContext, schedule_id: str, *, lock: bool = False
) -> Schedule:
    schedule = repo.get_schedule(session, auth.environment_id, schedule_id, lock=lock)
    if schedule is None:
        raise ScheduleNotFound()
    return schedule


def update_schedule(
    session: Session, auth: AuthContext, schedule_id: str, body: UpdateScheduleRequest
) -> Schedule:
    """Replace an imperative schedule's task, cron, timezone and externalId (a declarative
    one is 400: its code owns it). A changed cron or timezone moves the next tick."""
    schedule = get_schedule(session, auth, schedule_id, lock=True)
    _imperative(schedule, "update")
    cron = new_cron(body.cron, body.timezone)
    _task_must_exist(session, auth.project_id, body.task)
    return _replace(session, schedule, body, cron)


def set_active(session: Session, auth: AuthContext, schedule_id: str, active: bool) -> Schedule:
    """Activate (the next tick is the first one from now: no catch-up for the time it was
    off) or deactivate (no tick fires until it is activated again)."""
    schedule = get_schedule(session, auth, schedule_id, lock=True)
    _imperative(schedule, "activate" if active else "deactivate")
    if schedule.active != active:
        next_tick = (
            Cron.parse(schedule.cron, schedule.timezone).next_after(db_now(session))
            if active
            else None
        )
        repo.update_schedule(session, schedule.id, active=active, next_tick_at=next_tick)
        schedule = get_schedule(session, auth, schedule_id)
    return schedule


def delete_schedule(session: Session, auth: AuthContext, schedule_id: str) -> str:
    """Delete an imperative schedule; its runs keep their ``schedule`` id."""
    schedule = get_schedule(session, auth, schedule_id, lock=True)
    _imperative(schedule, "delete")
    repo.delete_schedule(session, schedule.id)
    return schedule.id


@dataclass(frozen=True)
class SchedulePage:
    schedules: list[Schedule]
    page: int
    total_pages: int
    count: int


def list_schedules(
    session: Session, auth: AuthContext, page: int = 1, per_page: int = DEFAULT_PER_PAGE
) -> SchedulePage:
    """Newest first, ``per_page`` (1 to 100) a page, pages numbered from 1."""
    if page < 1:
        raise BadRequest("page must be a whole number from 1")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(f"perPage must be a whole number from 1 to {MAX_PER_PAGE}")
    rows, count = repo.list_schedules(session, auth.environment_id, (page - 1) * per_page, per_page)
    total_pages = max(1, -(-count // per_page))
    return SchedulePage(rows, page, total_pages, count)


def next_runs(schedule: Schedule, after: datetime, count: int = NEXT_RUNS_SHOWN) -> list[datetime]:
    """The schedule's next ``count`` ticks from its next one (none while inactive)."""
    if not schedule.active or schedule.next_tick_at is None:
        return []
    cron = Cron.parse(schedule.cron, schedule.timezone)
    first = max(schedule.next_tick_at, after)
    ticks = [schedule.next_tick_at] if schedule.next_tick_at >= after else []
    return [*ticks, *cron.upcoming(first, count - len(ticks))][:count]


def validate_declared(task_id: str, declared: dict[str, Any]) -> Cron:
    """The cron of a ``@task(cron=…)`` entry of a catalogue; 400 naming the task if bad."""
    try:
        return new_cron(str(declared["cron"]), declared.get("timezone"))
    except BadRequest as exc:
        raise BadRequest(f"task '{task_id}': {exc.message}") from None


def _declared_in(entry: dict[str, Any], environment_slug: str) -> bool:
    environments = entry.get("cron_environments")
    return bool(entry.get("cron")) and (not environments or environment_slug in environments)


@dataclass(frozen=True)
class DeclaringEnvironment:
    """An environment a version registers in: its declarative schedules follow the
    catalogue (``cron_environments`` names environments by slug)."""

    project_id: str
    environment_id: str
    slug: str


def sync_declarative(
    session: Session,
    project_id: str,
    environment_id: str,
    environment_slug: str,
    catalogue: dict[str, dict[str, Any]],
) -> None:
    """Make the environment's declarative schedules what a registering version declares:
    one per task with ``cron`` for this environment (created, or updated and active
    again), and every other one deactivated (a version that drops ``cron`` stops its
    ticks; one that brings it back resumes them from now)."""
    sync_declarative_in(
        session, [DeclaringEnvironment(project_id, environment_id, environment_slug)], catalogue
    )


def sync_declarative_in(
    session: Session,
    environments: Collection[DeclaringEnvironment],
    catalogue: dict[str, dict[str, Any]],
) -> None:
    """:func:`sync_declarative` in each of these environments, a few statements for them
    all (a worker process registers in every environment it serves when it boots): their
    declarative schedules read (and locked) at once, and what changes written at once."""
    slugs = {env.slug for env in environments}
    crons = {
        task_id: validate_declared(task_id, entry)
        for task_id, entry in catalogue.items()
        if any(_declared_in(entry, slug) for slug in slugs)
    }
    if not environments:
        return
    now = db_now(session)
    next_ticks = {task_id: cron.next_after(now) for task_id, cron in crons.items()}
    existing: dict[tuple[str, str], Schedule] = {
        (s.environment_id, s.task_identifier): s
        for s in repo.declarative_in(session, [env.environment_id for env in environments])
    }
    created: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    declared_keys: set[tuple[str, str]] = set()
    for env in environments:
        for task_id, cron in crons.items():
            if not _declared_in(catalogue[task_id], env.slug):
                continue
            declared_keys.add((env.environment_id, task_id))
            schedule = existing.get((env.environment_id, task_id))
            if schedule is None:
                created.append({
                    "id": new_id("sched"),
                    "project_id": env.project_id,
                    "environment_id": env.environment_id,
                    "task_identifier": task_id,
                    "cron": cron.expression,
                    "timezone": cron.timezone,
                    "next_tick_at": next_ticks[task_id],
                })
            elif not schedule.active or (schedule.cron, schedule.timezone) != (
                cron.expression, cron.timezone
            ):
                changed.append({
                    "id": schedule.id, "cron": cron.expression, "timezone": cron.timezone,
                    "next_tick_at": next_ticks[task_id],
                })
    dropped = [
        schedule.id for key, schedule in existing.items()
        if key not in declared_keys and schedule.active
    ]
    repo.insert_declarative(session, created, now)
    repo.reactivate_declarative(session, changed)
    repo.deactivate(session, dropped)


def scheduled_payload(schedule: Schedule, cron: Cron, tick: datetime) -> dict[str, Any]:
    """Trigger.dev's ``ScheduledTaskPayload``, dates as ISO-8601 strings."""
    payload: dict[str, Any] = {
        "scheduleId": schedule.id,
        "type": str(schedule.type),
        "timestamp": iso(tick),
        "timezone": schedule.timezone,
        "upcoming": [iso(t) for t in cron.upcoming(tick, UPCOMING_IN_PAYLOAD)],
    }
    if schedule.last_tick_at is not None:
        payload["lastTimestamp"] = iso(schedule.last_tick_at)
    if schedule.external_id is not None:
        payload["externalId"] = schedule.external_id
    return payload


@dataclass(frozen=True)
class TickPlan:
    """What a sweep at ``now`` does with a schedule due at ``due``: run ``tick`` (the latest
    tick at or before ``now``; later than ``due`` when ticks were missed), then wait for
    ``next_tick_at`` (the first tick after ``now``; None if the cron never matches again)."""

    tick: datetime
    next_tick_at: datetime | None

    def skipped(self, due: datetime) -> bool:
        return self.tick > due


def plan_tick(cron: Cron, due: datetime, now: datetime) -> TickPlan:
    """The catch-up policy as a pure function of the clock (see the module docstring)."""
    tick = max(due, cron.latest_at_or_before(now) or due)
    return TickPlan(tick, cron.next_after(max(tick, now)))


def _fire(session: Session, schedule: Schedule, now: datetime) -> bool:
    """Fire the schedule's latest due tick (skipping older missed ones) and move it on.
    True if this call created the tick's run."""
    cron = Cron.parse(schedule.cron, schedule.timezone)
    due = schedule.next_tick_at
    assert due is not None
    plan = plan_tick(cron, due, now)
    tick = plan.tick
    if plan.skipped(due):
        log.info(
            "schedule %s missed its ticks from %s: running only the latest, %s",
            schedule.id, iso(due), iso(tick), extra={"schedule_id": schedule.id},
        )
    spec = NewRun(
        task_identifier=schedule.task_identifier,
        payload=scheduled_payload(schedule, cron, tick),
        payload_type="application/json",
        options=RunOptions(),
        triggered_by="schedule",
        schedule_id=schedule.id,
        schedule_tick_at=tick,
    )
    created = True
    try:
        with session.begin_nested():
            run = create_run(session, schedule.project_id, schedule.environment_id, spec)
        log.info("schedule %s fired its tick %s", schedule.id, iso(tick),
                 extra={"schedule_id": schedule.id, "run_id": run.id})
    except runs_repo.DuplicateRun:
        created = False  # this tick already has its run
    except RepriseError as exc:
        created = False  # e.g. the task is gone from every version: skip the tick, go on
        log.warning("schedule %s could not fire its tick %s: %s", schedule.id, iso(tick),
                    exc.message, extra={"schedule_id": schedule.id})
    repo.record_tick(session, schedule.id, tick, plan.next_tick_at)
    return created


def fire_due_schedules(session: Session, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Create the run of every due tick (one per schedule, see the module docstring) and
    move each schedule to its next tick; returns how many runs were created. The runs are
    published after the caller commits."""
    if not repo.any_due(session):
        return 0
    now = db_now(session)
    fired = 0
    while True:
        batch = repo.claim_due(session, batch_size)
        fired += sum(_fire(session, schedule, now) for schedule in batch)
        if len(batch) < batch_size:
            return fired
