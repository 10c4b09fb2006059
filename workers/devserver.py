"""``reprise dev``: the whole stack on one machine.

Starts embedded PostgreSQL and Redis (unless ``REPRISE_DATABASE_URL`` and
``REPRISE_REDIS_URL`` are set), migrates, starts the api, a worker, the control process,
beat and Flower as child processes, makes sure a dev project and key exist, and prints
the URLs and the key once the API answers and the worker has registered. Ctrl-C stops
everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from shared.settings import get_settings, reset_settings_cache
from workers.devstack import EmbeddedPostgres, EmbeddedRedis

DEV_KEY_FILE = "dev-key"


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def _dev_key(data_dir: Path) -> str:
    """The dev key, reused across restarts while it stays valid (keys are stored hashed,
    so the plain key is kept in the data dir, which is for this machine only)."""
    from shared.db import transaction
    from shared.errors import Unauthorized
    from shared.projects.service import authenticate, create_key, ensure_project

    path = data_dir / DEV_KEY_FILE
    with transaction() as session:
        ensure_project(session)
        if path.exists():
            saved = path.read_text().strip()
            try:
                authenticate(session, saved)
                return saved
            except Unauthorized:
                pass
        secret = create_key(session, "dev")
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def _wait_worker_registered(timeout: float) -> bool:
    from shared.db import transaction
    from shared.projects.service import worker_registered

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with transaction() as session:
            registered = worker_registered(session)
        if registered:
            return True
        time.sleep(0.2)
    return False


def run_dev(port: int = 8000, data_dir: str = ".reprise", flower_port: int = 5555) -> int:
    began = time.monotonic()
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    servers: list[EmbeddedPostgres | EmbeddedRedis] = []
    env = dict(os.environ)
    if not (env.get("REPRISE_DATABASE_URL") and env.get("REPRISE_REDIS_URL")):
        postgres = EmbeddedPostgres(root / "postgres")
        redis = EmbeddedRedis(root / "redis")
        env.setdefault("REPRISE_DATABASE_URL", postgres.start())
        env.setdefault("REPRISE_REDIS_URL", redis.start())
        servers += [redis, postgres]
    env.setdefault("REPRISE_MODE", "dev")
    # Ctrl-C should stop the dev worker in seconds, not wait out production's soft shutdown.
    env.setdefault("REPRISE_WORKER_SOFT_SHUTDOWN_SECONDS", "5")
    os.environ.update(env)
    reset_settings_cache()

    from shared.migrations import upgrade
    from workers.ops import flower_command, flower_url

    upgrade(get_settings().database_url)
    key = _dev_key(root)

    exe = [sys.executable, "-m", "reprise.cli"]
    children = [
        subprocess.Popen([*exe, "api", "--port", str(port)], env=env),
        subprocess.Popen(
            [*exe, "worker", "--pool", "threads", "--concurrency", "4", "--loglevel", "INFO"],
            env=env,
        ),
        subprocess.Popen([*exe, "control", "--loglevel", "WARNING"], env=env),
        subprocess.Popen(
            [*exe, "beat", "--schedule", str(root / "celerybeat-schedule"), "--loglevel", "WARNING"],
            env=env,
        ),
        subprocess.Popen(flower_command(flower_port), env=env),
    ]

    def stop() -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        for server in servers:
            server.stop()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        base = f"http://127.0.0.1:{port}"
        if not _wait_http(f"{base}/healthz", 60) or not _wait_worker_registered(60):
            print("reprise dev: the api or the worker did not start; see the logs above",
                  file=sys.stderr)
            stop()
            return 1
        ready = time.monotonic() - began
        print(
            "\n"
            f"  Reprise is ready in {ready:.1f}s\n"
            f"  API:        {base}\n"
            f"  Docs:       {base}/docs\n"
            f"  Flower:     {flower_url(flower_port)}\n"
            f"  Secret key: {key}\n"
            f"  Database:   {get_settings().database_url}\n"
            f"  Redis:      {get_settings().redis_url}\n\n"
            f"  curl -X POST {base}/api/v1/tasks/hello-world/trigger \\\n"
            f"    -H 'Authorization: Bearer {key}' -H 'content-type: application/json' \\\n"
            "    -d '{\"payload\": {\"name\": \"Ada\"}}'\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("reprise dev: a process exited; stopping the stack", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
