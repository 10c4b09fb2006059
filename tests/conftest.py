"""Real servers for the whole suite.

With ``REPRISE_TEST_DATABASE_URL`` and ``REPRISE_TEST_REDIS_URL`` set, tests use those
servers (a fresh database per session, a unique Celery queue prefix). Otherwise an
embedded PostgreSQL and Redis are started for the session, as on a fresh machine.
Servers are started in ``pytest_configure`` because settings (and so the Celery app) are
read when modules are imported.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import pytest

_state: dict[str, Any] = {}

TEST_SETTINGS = {
    "REPRISE_MODE": "dev",
    "REPRISE_TASK_MODULES": "reprise_server.examples.tasks,tests.support.tasks",
    "REPRISE_WORKER_VERSION": "20261122.1",
    "REPRISE_WORKER_HEARTBEAT_SECONDS": "0.1",
    "REPRISE_STALE_RUN_SECONDS": "2",
    "REPRISE_RETRY_BACKOFF_BASE_SECONDS": "0.05",
    "REPRISE_RETRY_BACKOFF_MAX_SECONDS": "0.2",
    "REPRISE_LOG_FORMAT": "text",
}


def _start_servers() -> tuple[str, str]:
    db_url = os.environ.get("REPRISE_TEST_DATABASE_URL")
    redis_url = os.environ.get("REPRISE_TEST_REDIS_URL")
    name = f"reprise_test_{secrets.token_hex(4)}"
    if db_url and redis_url:
        import psycopg

        from reprise_server.shared.settings import normalise_database_url

        admin = normalise_database_url(db_url).replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        _state["drop_database"] = (admin, name)
        base = normalise_database_url(db_url)
        return base.rsplit("/", 1)[0] + f"/{name}", redis_url

    from reprise_server.workers.devstack import EmbeddedPostgres, EmbeddedRedis

    root = Path(tempfile.mkdtemp(prefix="reprise-test-"))
    postgres = EmbeddedPostgres(root / "pg", durable=False)
    redis = EmbeddedRedis(root / "redis", appendonly=False)
    _state["embedded"] = (postgres, redis, root)
    return postgres.start(), redis.start()


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    db_url, redis_url = _start_servers()
    os.environ.update(TEST_SETTINGS)
    os.environ["REPRISE_DATABASE_URL"] = db_url
    os.environ["REPRISE_REDIS_URL"] = redis_url
    os.environ["REPRISE_QUEUE_PREFIX"] = f"reprise-test-{secrets.token_hex(3)}"
    from reprise_server.shared.migrations import upgrade

    upgrade(db_url)


# A test that uses one of these fixtures gets the marker, wherever it is: the session's live
# API (a uvicorn subprocess) makes it an end-to-end test, Chromium a browser test.
_MARKER_OF_FIXTURE = {"live_server": "e2e", "browser": "browser"}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in _MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


def pytest_unconfigure(config: pytest.Config) -> None:
    from reprise_server.shared.db import dispose_engines

    dispose_engines()
    if "drop_database" in _state:
        import psycopg

        admin, name = _state.pop("drop_database")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if "embedded" in _state:
        import shutil

        postgres, redis, root = _state.pop("embedded")
        redis.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


from tests.support.fixtures import *
