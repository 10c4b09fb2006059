"""Operator processes and probes: ``reprise flower`` and ``reprise healthcheck``.

Flower runs on the workers' own Celery app (:data:`workers.app`, built by
:func:`shared.broker.celery_app`), so it talks to Redis with exactly the workers'
``broker_transport_options``: its event receiver and its inspect/control calls open
their connections through ``app.connection()``, which passes those options to kombu. With
a different ``visibility_timeout`` Flower's Redis channel would restore (re-deliver)
messages the workers still hold, ETA timers above all. Its in-memory state is not
persisted (``--persistent=False``): Postgres is the record of runs, Flower is a live view.
"""

from __future__ import annotations

import os
import sys
import time

from reprise_server.shared.settings import Settings, get_settings, reset_settings_cache


class FlowerConfigurationError(Exception):
    """Flower must not start with this configuration (the message says why)."""


# Flower options that do not depend on the deployment. Workers come and go with
# autoscaling: forget the offline ones after 10 minutes; bound the task history kept in
# memory (the full history is in Postgres).
FLOWER_FIXED_OPTIONS = (
    "--persistent=False",
    "--purge_offline_workers=600",
    "--max_tasks=10000",
)


def _is_loopback(address: str) -> bool:
    return address in ("127.0.0.1", "localhost", "::1")


def flower_environment(settings: Settings, address: str) -> dict[str, str]:
    """Environment variables Flower reads itself (kept out of argv, which ``ps`` shows).

    Outside dev, basic auth is mandatory. In dev without it, Flower's HTTP API is opened
    (``FLOWER_UNAUTHENTICATED_API``) only when Flower listens on loopback.
    """
    credentials = [c.strip() for c in settings.flower_basic_auth.split(",") if c.strip()]
    if any(":" not in c or c.startswith(":") for c in credentials):
        raise FlowerConfigurationError(
            "REPRISE_FLOWER_BASIC_AUTH must be user:password (comma-separated for several users)"
        )
    if credentials:
        return {"FLOWER_BASIC_AUTH": ",".join(credentials)}
    if settings.mode != "dev":
        raise FlowerConfigurationError(
            "REPRISE_FLOWER_BASIC_AUTH (user:password) is required when REPRISE_MODE is "
            f"{settings.mode}: Flower can shut down workers and revoke tasks, so it never "
            "runs unauthenticated outside dev"
        )
    return {"FLOWER_UNAUTHENTICATED_API": "true"} if _is_loopback(address) else {}


def flower_argv(address: str, port: int) -> list[str]:
    """The ``celery`` command line (after the app) that starts Flower."""
    return ["flower", f"--address={address}", f"--port={port}", *FLOWER_FIXED_OPTIONS]


def flower_command(port: int, address: str = "127.0.0.1") -> list[str]:
    """How ``reprise dev`` starts Flower as a subprocess (same interpreter, same settings
    from the environment); the UI is then at :func:`flower_url`."""
    return [
        sys.executable,
        "-m",
        "reprise.cli",
        "flower",
        "--address",
        address,
        "--port",
        str(port),
    ]


def flower_url(port: int, address: str = "127.0.0.1") -> str:
    host = "127.0.0.1" if address in ("", "0.0.0.0") else address
    return f"http://{host}:{port}/"


def run_flower(address: str, port: int, settings: Settings | None = None) -> int:
    """``reprise flower``: Flower in the foreground, for the workers' app. Exit code 2 when
    the configuration is refused (before connecting to anything)."""
    settings = settings or get_settings()
    try:
        environment = flower_environment(settings, address)
    except FlowerConfigurationError as exc:
        print(f"reprise flower: {exc}", file=sys.stderr)
        return 2
    settings.require_urls()
    from reprise_server.shared.logs import configure_logging

    configure_logging("flower")
    os.environ.update(environment)
    # Flower picks its broker page by the scheme of the URL it reads back from its
    # connection, which Reprise's transport class would replace: Flower, which only
    # listens, keeps kombu's stock Redis transport (shared/redis_transport.py).
    os.environ["REPRISE_BROKER_SHARED_CLIENT"] = "false"
    reset_settings_cache()
    from reprise_server.workers.app import app

    return int(app.start(flower_argv(address, port)) or 0)


def healthcheck(process: str, settings: Settings | None = None) -> int:
    """``reprise healthcheck worker|beat``: 0 while the process's liveness file is fresh.

    Cheap by design (a ``stat``): probes run it every few seconds in every pod.
    """
    from reprise_server.workers.monitoring import LIVENESS_PROCESSES, liveness_path

    if process not in LIVENESS_PROCESSES:
        print(f"unknown process {process!r}", file=sys.stderr)
        return 2
    settings = settings or get_settings()
    path = liveness_path(process, settings)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"{process} unhealthy: {path} does not exist (not started yet?)", file=sys.stderr)
        return 1
    if age > settings.liveness_max_age_seconds:
        print(
            f"{process} unhealthy: {path} last touched {age:.0f}s ago "
            f"(limit {settings.liveness_max_age_seconds:g}s)",
            file=sys.stderr,
        )
        return 1
    print(f"{process} alive ({age:.1f}s ago)")
    return 0
