"""What ``bench/delays.py`` and ``bench/ttl.py`` share: servers, settings, processes, SQL.

Postgres and Redis are the servers ``REPRISE_DATABASE_URL`` / ``REPRISE_REDIS_URL`` name
(in a scratch database), else embedded ones started here (durable, as ``reprise dev``
runs them). Settings are the project's defaults; only the URLs, a private queue prefix
and the worker version are set.
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "RESULTS.md"
RESULTS_HEADER = "# Benchmark results\n\nMachine: 2 cores, 24 GiB RAM. Date: 2026-11-22.\n"


@contextmanager
def servers() -> Iterator[tuple[str, str]]:
    db_url = os.environ.get("REPRISE_DATABASE_URL")
    redis_url = os.environ.get("REPRISE_REDIS_URL")
    if db_url and redis_url:
        import psycopg

        from reprise_server.shared.settings import normalise_database_url

        name = f"reprise_bench_{secrets.token_hex(4)}"
        base = normalise_database_url(db_url)
        admin = base.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.rsplit("/", 1)[0] + f"/{name}", redis_url
        finally:
            from reprise_server.shared.db import dispose_engines

            dispose_engines()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    from reprise_server.workers.devstack import EmbeddedPostgres, EmbeddedRedis

    root = Path(tempfile.mkdtemp(prefix="reprise-bench-"))
    postgres, redis = EmbeddedPostgres(root / "pg"), EmbeddedRedis(root / "redis")
    try:
        yield postgres.start(), redis.start()
    finally:
        from reprise_server.shared.db import dispose_engines

        dispose_engines()
        redis.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def configure(db_url: str, redis_url: str, version: str, task_modules: str) -> dict[str, str]:
    """Point this process's settings at the servers; returns the env for child processes."""
    env = {
        "REPRISE_MODE": "dev",
        "REPRISE_DATABASE_URL": db_url,
        "REPRISE_REDIS_URL": redis_url,
        "REPRISE_QUEUE_PREFIX": f"bench-{secrets.token_hex(3)}",
        "REPRISE_TASK_MODULES": task_modules,
        "REPRISE_WORKER_VERSION": version,
        "REPRISE_LOG_FORMAT": "text",
    }
    os.environ.update(env)
    from reprise_server.shared.settings import reset_settings_cache

    reset_settings_cache()
    from reprise_server.shared.migrations import upgrade

    upgrade(db_url)
    return {**os.environ, **env, "PYTHONPATH": str(ROOT)}


# The baselines are Celery as a team gets it: kombu's stock Redis transport, not Reprise's
# (which keeps one redis-py client per channel, shared/redis_transport.py).
STOCK_KOMBU = {"REPRISE_BROKER_SHARED_CLIENT": "false"}


@lru_cache(maxsize=1)
def baseline_app() -> Any:
    """The Celery app of the baselines' publishers: Reprise's settings, stock transport."""
    from celery import Celery

    from reprise_server.shared.broker import configure_celery
    from reprise_server.shared.settings import get_settings

    settings = get_settings().model_copy(update={"broker_shared_client": False})
    return configure_celery(Celery("baseline"), settings)


def start(argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *argv], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def start_bench_api(
    env: dict[str, str], port: int, workers: int, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """The api with the bare baseline endpoint (``bench.app``), ready to answer."""
    import httpx

    out = log.open("ab") if log else None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "bench.app:create_bench_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--no-access-log", "--workers", str(workers)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
        )
    finally:
        if out:
            out.close()

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, "the API")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def runs_insert_sql(select_rows: str) -> str:
    """``INSERT INTO runs`` of every NOT NULL column from ``select_rows``, which yields
    ``id, status, delayed_until, schedule_token, queued_at, ttl_seconds, ttl_expires_at``
    plus ``:project`` / ``:env`` parameters (a bulk insert, not the trigger path)."""
    return (
        "INSERT INTO runs (id, project_id, environment_id, task_identifier, status, payload, "
        "payload_type, tags, max_attempts, priority, is_test, debug_mode, trigger_function, "
        "triggered_by, schedule_token, attempt_count, duration_ms, cost_in_cents, "
        "base_cost_in_cents, depth, lineage_depth, delayed_until, queued_at, ttl_seconds, "
        "ttl_expires_at, created_at, updated_at) "
        "SELECT r.id, :project, :env, 'hello-world', r.status, '{\"name\": \"bench\"}', "
        "'application/json', '{}', 3, 0, false, false, 'trigger', 'api', r.schedule_token, "
        "0, 0, 0, 0, 0, 0, r.delayed_until, r.queued_at, r.ttl_seconds, r.ttl_expires_at, "
        "now(), now() "
        f"FROM ({select_rows}) AS r"
    )


def bench_project() -> tuple[str, str]:
    """The ``bench`` project and its dev environment id."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects import repository as projects_repo
    from reprise_server.shared.projects.service import ensure_project

    with transaction() as session:
        project = ensure_project(session, "bench")
        env = projects_repo.get_environment(session, project.id, "dev")
        assert env is not None
        return project.id, env.id


def maintenance(*statements: str) -> None:
    """``VACUUM`` / ``CHECKPOINT`` and the like, outside a transaction."""
    from reprise_server.shared.db import get_engine

    with get_engine().connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for statement in statements:
            conn.exec_driver_sql(statement)


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"


def append_results(section: str) -> None:
    """Append one section to bench/RESULTS.md (re-read first: others append too)."""
    text = RESULTS.read_text() if RESULTS.exists() else RESULTS_HEADER
    if not text.endswith("\n"):
        text += "\n"
    RESULTS.write_text(text + "\n" + section.rstrip() + "\n")


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
