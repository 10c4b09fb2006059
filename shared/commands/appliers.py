"""The outbox's table of appliers: what applying a pending command of each kind does.

Each kind's module registers its applier when imported (:mod:`shared.commands.replay`,
:mod:`shared.bulk.batches`), so the outbox (:func:`shared.commands.service.apply_command`)
knows no feature; a process that applies a kind imports the module that owns it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from reprise_server.shared.commands.models import Command, CommandKind
from reprise_server.shared.projects.models import Environment
from reprise_server.shared.runs.models import Run


class LockedCommand(NamedTuple):
    """A pending command, its row locked, with the run it was issued against and the
    environment its effect lands in (loaded in the same round trip)."""

    command: Command
    source: Run | None
    environment: Environment | None


# Applies the command's effect in the caller's transaction and returns the command's
# result; raises a RepriseError (or a pydantic or duration error) to reject it, having
# written nothing.
Applier = Callable[[Session, LockedCommand, str], dict[str, Any]]

_APPLIERS: dict[str, Applier] = {}


def register_applier(kind: CommandKind, applier: Applier) -> None:
    _APPLIERS[kind.value] = applier


def applier_of(kind: str) -> Applier | None:
    return _APPLIERS.get(kind)
