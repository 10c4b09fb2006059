"""A worker version arrives: its task catalogue is registered in the environments it
serves (with the concurrency limits and queues it declares), their declarative schedules
become what it declares (``@task(cron=…)``), and the
runs waiting for a version that has their task (PENDING_VERSION) are released.

It sits above projects, schedules and runs, and uses each. Services take a session first
and never commit: releasing a large backlog is a batch per transaction, the caller's loop
(``workers.runtime.register_version``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.flow import limits
from reprise_server.shared.projects import repository as projects_repo
from reprise_server.shared.projects.models import Environment
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs import repository as runs_repo
from reprise_server.shared.runs.schemas import valid_queue_name
from reprise_server.shared.schedules.service import DeclaringEnvironment, sync_declarative_in
from reprise_server.shared.versions import repository as repo


def register_worker_version(
    session: Session,
    version: str,
    catalogue: dict[str, dict[str, Any]],
    env_slugs: Collection[str],
    project_id: str | None = None,
) -> list[str]:
    """Register ``version`` and its task catalogue in the named environments (of every
    project, or of one), and make each one's declarative schedules what the catalogue
    declares. Returns the ids of those environments: release their waiting runs next
    (:func:`release_waiting_runs`).

    Every worker process registers when it boots, in every environment it serves. Where
    the environment's latest registration is this version with this very catalogue, there
    is nothing to write (its limits, queues and declarative schedules are what the
    catalogue declares): the registration is only marked as made again. Elsewhere, a few
    statements per table for all the environments where it changed, never a few per
    environment: a version (or a catalogue) new everywhere is written everywhere at one
    boot. Each table's rows are locked in one order (environments, limits and schedules by
    id) and the tables one after the other in one order: boots running at once never wait
    for each other in a cycle."""
    _check_queues(catalogue)
    catalogue = {task_id: dict(options) for task_id, options in catalogue.items()}
    declarations = limits.read_declarations(catalogue)
    digest = catalogue_digest(catalogue)
    environments = [
        env for env in projects_repo.list_environments(session, project_id)
        if env.slug in env_slugs
    ]
    current = repo.current_registrations(session, [env.id for env in environments])
    unchanged: dict[str, str] = {}
    changed: list[Environment] = []
    for env in environments:
        latest = current.get(env.id)
        if latest is not None and (latest.version, latest.catalogue_digest) == (version, digest):
            unchanged[env.id] = latest.id
        else:
            changed.append(env)
    environment_ids = [env.id for env in environments]
    changed_ids = [env.id for env in changed]
    repo.upsert_worker_versions(
        session, changed_ids, version, catalogue.items(), digest, registered=unchanged
    )
    limits.register_declarations_in(session, changed_ids, declarations, catalogue)
    sync_declarative_in(session, [
        DeclaringEnvironment(env.project_id, env.id, env.slug) for env in changed
    ], catalogue)
    return environment_ids


def catalogue_digest(catalogue: dict[str, dict[str, Any]]) -> str:
    """The same catalogue (tasks and their options) gives the same digest."""
    return hashlib.sha256(
        json.dumps(catalogue, sort_keys=True, default=str).encode()
    ).hexdigest()


def _check_queues(catalogue: dict[str, dict[str, Any]]) -> None:
    """A queue declared in code (``@task(queue=…)``) follows the rule a trigger's does:
    refused, naming the task, before anything is registered."""
    for task_id, options in catalogue.items():
        if options.get("queue") is not None:
            try:
                valid_queue_name(options["queue"])
            except ValueError as exc:
                raise InvalidInput(f"task {task_id!r}: {exc}") from None


def environments_with_waiting_runs(
    session: Session, environment_ids: Collection[str], task_identifiers: Collection[str]
) -> list[str]:
    """Those of these environments with runs waiting for one of these tasks: a boot
    releases only there, not a transaction per environment it serves."""
    return runs_repo.environments_with_pending_version(
        session, environment_ids, task_identifiers
    )


def release_waiting_runs(
    session: Session, environment_id: str, task_identifiers: Collection[str], limit: int
) -> list[str]:
    """Queue up to ``limit`` of the environment's PENDING_VERSION runs of these tasks (each
    published after commit); fewer than ``limit`` released means none is left to release.
    Safe to run concurrently with itself (every worker process registers when it boots):
    each run is released once."""
    return lifecycle.release_pending_version(session, environment_id, task_identifiers, limit)


def worker_registered(session: Session, since: datetime | None = None) -> bool:
    """Whether a worker has registered a version (since ``since``, by the database clock):
    ``reprise dev`` waits for a registration from its own start."""
    latest = repo.latest_registration(session)
    return latest is not None and (since is None or latest.registered_at >= since)
