"""The ``reprise`` command line (§11, §13).

Server commands (``dev``, ``migrate``, ``api``, ``worker``, ``beat``, ``flower``,
``healthcheck``, ``keys``) run processes of the stack; client commands (``trigger``,
``runs``) talk to an API over HTTP and live in :mod:`reprise.cli_client`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def _cmd_migrate(args: argparse.Namespace) -> int:
    from shared.migrations import upgrade
    from shared.settings import get_settings

    settings = get_settings()
    settings.require_urls()
    upgrade(settings.database_url)
    print("migrations applied")
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from shared.logs import configure_logging

    configure_logging("api")
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from shared.exporter import start_worker_exporter
    from shared.logs import configure_logging

    configure_logging("worker")
    start_worker_exporter()  # before `workers` imports prometheus_client (multiprocess mode)
    from workers.app import app

    # Reprise coordinates through Postgres, not worker-to-worker gossip: skipping mingle and
    # gossip saves a second at start and broadcast chatter at scale.
    argv = [
        "worker", "--loglevel", args.loglevel, "--pool", args.pool,
        "--without-mingle", "--without-gossip",
    ]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    if args.queues:
        argv += ["--queues", args.queues]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


def _cmd_beat(args: argparse.Namespace) -> int:
    from shared.logs import configure_logging
    from workers.app import app

    configure_logging("beat")
    argv = ["beat", "--loglevel", args.loglevel]
    if args.schedule:
        argv += ["--schedule", args.schedule]
    app.start(argv)
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from shared.db import transaction
    from shared.projects import repository as projects_repo
    from shared.projects.service import create_key
    from shared.settings import get_settings

    get_settings().require_urls()
    if args.keys_command == "create":
        with transaction() as session:
            secret = create_key(session, args.env, args.project)
        print(secret)
        return 0
    if args.keys_command == "list":
        with transaction() as session:
            rows = projects_repo.list_keys(session)
        for key, env, project in rows:
            state = "revoked" if key.revoked_at else "active"
            print(f"{key.id}  {project.slug:<16} {env.slug:<8} {key.display_prefix}…  {state}")
        return 0
    with transaction() as session:
        count = projects_repo.revoke_key(session, args.key_id)
    if not count:
        print(f"no active key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {count} key(s)")
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from workers.devserver import run_dev

    return int(run_dev(port=args.port, data_dir=args.data_dir, flower_port=args.flower_port))


def _cmd_flower(args: argparse.Namespace) -> int:
    from workers.ops import run_flower

    return int(run_flower(address=args.address, port=args.port))


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    from workers.ops import healthcheck

    return int(healthcheck(args.process))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reprise", description="Reprise: background-job runs you can replay and reschedule."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="run the whole stack locally (embedded Postgres and Redis)")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--flower-port", type=int, default=5555)
    dev.add_argument("--data-dir", default=".reprise")
    dev.set_defaults(handler=_cmd_dev)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_cmd_migrate)

    api = sub.add_parser("api", help="serve the REST API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    api.set_defaults(handler=_cmd_api)

    worker = sub.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=0)
    worker.add_argument("--pool", default="prefork")
    worker.add_argument("--queues", default="")
    worker.add_argument("--hostname", default="")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=_cmd_worker)

    beat = sub.add_parser("beat", help="run the beat scheduler (exactly one per deployment)")
    beat.add_argument("--schedule", default="")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(handler=_cmd_beat)

    flower = sub.add_parser("flower", help="run Flower for operators")
    flower.add_argument("--address", default="0.0.0.0")
    flower.add_argument("--port", type=int, default=5555)
    flower.set_defaults(handler=_cmd_flower)

    health = sub.add_parser("healthcheck", help="liveness check for probes (exit 0 = healthy)")
    health.add_argument("process", choices=["worker", "beat"])
    health.set_defaults(handler=_cmd_healthcheck)

    keys = sub.add_parser("keys", help="manage secret API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it")
    create.add_argument("--env", choices=["dev", "staging", "prod"], default="dev")
    create.add_argument("--project", default=None, help="project slug (default: 'default')")
    keys_sub.add_parser("list", help="list keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or shown prefix")
    revoke.add_argument("key_id")
    keys.set_defaults(handler=_cmd_keys)

    try:
        from reprise.cli_client import add_client_commands
    except ImportError:  # pragma: no cover - client commands not installed
        pass
    else:
        add_client_commands(sub)
    return parser


def command_names() -> set[str]:
    """The subcommands this CLI has (deployment files are tested against it)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
