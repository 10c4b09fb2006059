"""Celery tasks of commands: apply one (idempotent by id), and the relay sweep.

Both are thin adapters over :mod:`shared.commands.service`; each task is one transaction.
A task that dies before committing (worker killed, database restart) leaves the command
pending: the message is redelivered (``acks_late``) or the relay sweep republishes it.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from shared import broker
from shared.commands import service
from shared.db import transaction
from workers.app import app
from workers.runtime import identity

log = logging.getLogger("reprise.worker")


@app.task(
    name=broker.APPLY_COMMAND,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=10,
    max_retries=5,
)
def apply_command(command_id: str) -> str:
    applier = identity().name
    with transaction() as session:
        command = service.apply_command(session, command_id, applier)
        outcome = command.status if command is not None else "missing"
    log.info("command %s -> %s", command_id, outcome)
    return outcome


@app.task(name=broker.RELAY_PENDING_COMMANDS)
def relay_pending_commands() -> int:
    with transaction() as session:
        return service.relay_pending_commands(session)
