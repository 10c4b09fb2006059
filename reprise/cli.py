"""The ``reprise`` command line.

Client commands (``trigger``, ``runs``) talk to an API over HTTP and live in
:mod:`reprise.cli_client`. Server commands (``dev``, ``migrate``, ``api``, ``worker``,
``beat``, ``flower``, ``healthcheck``, ``keys``) run processes of the stack; the
``reprise-server`` distribution adds them through an entry point, so the SDK never names
the server, and a client command line is parsed without loading them at all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from reprise.cli_client import add_client_commands

Handler = Callable[[argparse.Namespace], int]


SERVER_COMMANDS_GROUP = "reprise.cli"


@cache
def _server_entry_points() -> tuple[EntryPoint, ...]:
    """The ``reprise.cli`` entry points (a scan of every installed distribution: once)."""
    return tuple(entry_points(group=SERVER_COMMANDS_GROUP))


def _add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The server's commands, from the ``reprise.cli`` entry-point group that the
    ``reprise-server`` distribution fills; with only the SDK installed there are none, and
    the client commands still work."""
    for entry in _server_entry_points():
        add_commands: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
        add_commands = entry.load()
        add_commands(sub)


def build_parser(*, server: bool = True) -> argparse.ArgumentParser:
    """The CLI's parser; ``server=False`` leaves out the server commands."""
    parser = argparse.ArgumentParser(
        prog="reprise", description="Reprise: background-job runs you can replay and reschedule."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if server:
        _add_server_commands(sub)
    add_client_commands(sub)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def command_names() -> set[str]:
    """The subcommands this CLI has (deployment files are tested against it)."""
    return _subcommands(build_parser())


SERVER_COMMANDS = ("dev", "migrate", "api", "worker", "control", "beat", "flower", "healthcheck",
                   "keys")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    client = build_parser(server=False)
    is_client_command = bool(args_list) and args_list[0] in _subcommands(client)
    if args_list and args_list[0] in SERVER_COMMANDS and not _server_entry_points():
        print(
            f"reprise {args_list[0]} is a server command: install the server beside the SDK "
            "(from a clone of Reprise: pip install . ./server)",
            file=sys.stderr,
        )
        return 2
    parser = client if is_client_command else build_parser()
    args = parser.parse_args(args_list)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
