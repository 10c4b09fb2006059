"""Fixtures: a project with keys, an in-process Celery worker, an API client."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

T = TypeVar("T")

# Reprise queues (the `queue` option) the session's in-process worker serves.
SERVED_RUN_QUEUES = ("q1", "fast", "emails")


@dataclass
class ProjectKeys:
    project_id: str
    slug: str
    keys: dict[str, str]
    environment_ids: dict[str, str]

    def headers(self, env: str = "dev", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[env]}", **extra}


def truncate_runs() -> None:
    """Empty the run tables between tests. The session's worker may still be finishing a
    run of the previous test (its transactions lock rows of two of these tables); if the
    TRUNCATE's table locks deadlock with that, Postgres aborts one side: try again."""
    from sqlalchemy.exc import OperationalError

    from reprise_server.shared.db import transaction

    for attempt in range(5):
        try:
            with transaction() as session:
                session.execute(text("TRUNCATE runs, attempts, checkpoints, commands, bulk_actions, bulk_action_items, admission_line, concurrency_slots, concurrency_keys, run_logs, run_steps, waitpoint_blocks, waitpoints"))
            return
        except OperationalError as exc:
            if "deadlock" not in str(exc) or attempt == 4:
                raise


@pytest.fixture
def project() -> ProjectKeys:
    """A fresh project with a key per environment and the test worker's version registered."""
    truncate_runs()
    return new_project()


def new_project() -> ProjectKeys:
    """A project with a key per environment and the test worker's version registered (a
    second one, beside the ``project`` fixture's, for what one project must not see of
    another)."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects import repository as projects_repo
    from reprise_server.shared.projects.service import create_key, ensure_project
    from reprise_server.shared.settings import get_settings
    from reprise_server.workers.runtime import load_task_modules, register_version

    slug = f"p-{secrets.token_hex(4)}"
    with transaction() as session:
        proj = ensure_project(session, slug)
        keys = {env: create_key(session, env, slug) for env in ("dev", "staging", "prod")}
        env_ids = {
            env: projects_repo.get_environment(session, proj.id, env).id  # type: ignore[union-attr]
            for env in ("dev", "staging", "prod")
        }
    registry = load_task_modules(get_settings().task_modules)
    register_version(registry, get_settings().worker_version, ["dev", "staging", "prod"], proj.id)
    return ProjectKeys(proj.id, slug, keys, env_ids)


@pytest.fixture(scope="session")
def celery_worker() -> Iterator[Any]:
    """A real Celery worker consuming the real Redis broker, in this process (threads pool)."""
    from celery.contrib.testing.worker import start_worker

    from reprise_server.shared.broker import queue_names, run_queue
    from reprise_server.shared.settings import get_settings
    from reprise_server.workers.app import app
    from reprise_server.workers.runtime import boot

    boot()
    settings = get_settings()
    # The control queues and the run queues of the Reprise queues tests trigger into: a
    # run of a queue no worker serves waits (as in production).
    run_queues = [run_queue(settings, name) for name in SERVED_RUN_QUEUES]
    queues = ",".join([*queue_names(settings).values(), *run_queues])
    app.conf.worker_direct = False
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        queues=queues.split(","),
        shutdown_timeout=30,
    ) as worker:
        yield worker


@pytest.fixture
def api() -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from reprise_server.api.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


def wait_for(
    probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``probe`` until it returns a truthy value (an outcome, not a sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(interval)


def run_row(run_id: str) -> Any:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs import repository as repo

    with transaction() as session:
        return repo.get_run(session, None, run_id)


def wait_for_status(run_id: str, *statuses: str, timeout: float = 15.0) -> Any:
    def probe() -> Any:
        run = run_row(run_id)
        return run if run is not None and run.status in statuses else None

    return wait_for(probe, timeout, what=f"{run_id} to reach {statuses}")


def lock_waiters() -> int:
    """Backends of this database waiting on a lock (to see a forced interleaving)."""
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )
