"""The ``reprise`` command line (§11, §13).

Client commands (``trigger``, ``runs``) talk to an API over HTTP and live in
:mod:`reprise.cli_client`. Server commands (``dev``, ``migrate``, ``api``, ``worker``,
``beat``, ``flower``, ``healthcheck``, ``keys``) run processes of the stack; they belong to
the server (:mod:`workers.cli`), which this module reaches through one seam,
:func:`_add_server_commands`. A client command line is parsed without that seam, so
``reprise runs …`` imports nothing of the server.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from reprise.cli_client import add_client_commands

Handler = Callable[[argparse.Namespace], int]


def _add_server_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The one place the SDK's CLI reaches into the server. :mod:`workers.cli` needs only
    the standard library to define its commands; without the server's dependencies
    installed, running one says how to install them (``reprise[server]``)."""
    from workers.cli import add_server_commands

    add_server_commands(sub)


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


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    client = build_parser(server=False)
    is_client_command = bool(args_list) and args_list[0] in _subcommands(client)
    parser = client if is_client_command else build_parser()
    args = parser.parse_args(args_list)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
