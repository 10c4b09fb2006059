"""The Celery task that applies a command (idempotent by id): a thin adapter over
:mod:`shared.commands.service`, one transaction per task.

A task that dies before committing (worker killed, database restart) leaves the command
pending: the message is redelivered (``acks_late``) or the relay sweep
(:mod:`workers.sweeps`) republishes it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import OperationalError

from reprise_server.shared import broker
from reprise_server.shared.bulk import batches  # noqa: F401  (registers the bulk applier)
from reprise_server.shared.commands import service
from reprise_server.shared.db import transaction
from reprise_server.workers.runtime import process_name

log = logging.getLogger("reprise.worker")

app = broker.celery_app()
# The control process applies bulk batches: importing shared.bulk.batches above put their
# applier in the outbox's table (a replay's comes with the commands service).


# A lost database connection (a restart, a failover) retries the message with backoff;
# the apply is idempotent by command id.
_RETRIED: dict[str, Any] = {
    "autoretry_for": (OperationalError,), "retry_backoff": True, "retry_backoff_max": 10,
    "max_retries": 5,
}


@app.task(name=broker.APPLY_COMMAND, **_RETRIED)
def apply_command(command_id: str) -> str:
    return _apply_alone(command_id)


def _apply_alone(command_id: str) -> str:
    """Apply one command in its own transaction; its outcome."""
    with transaction() as session:
        command = service.apply_command(session, command_id, process_name())
        outcome = command.status if command is not None else "missing"
    log.info("command %s -> %s", command_id, outcome)
    return outcome


@app.task(name=broker.APPLY_COMMANDS, **_RETRIED)
def apply_commands(command_ids: list[str]) -> int:
    """Apply the commands published together in one transaction; those another
    transaction held, one by one after it. Returns how many needed no second look
    (decided by the batch, or before it).

    An error other than a lost connection (an unforeseen constraint, a bug) rolls the
    batch back, and each command is then applied alone, so one bad command cannot hold
    back the others: it fails alone (and so does the task, as Flower shows), left pending
    for the relay sweep.
    """
    applier = process_name()
    try:
        with transaction() as session:
            rest = service.apply_commands(session, command_ids, applier)
    except OperationalError:
        raise
    except Exception:
        log.warning("applying %d commands together failed; applying them one by one",
                    len(command_ids), exc_info=True)
        rest = command_ids
    failed: list[Exception] = []
    for command_id in rest:
        try:
            _apply_alone(command_id)
        except OperationalError:
            raise
        except Exception as exc:
            log.warning("command %s failed; the relay sweep publishes it again", command_id,
                        exc_info=True)
            failed.append(exc)
    decided = len(command_ids) - len(rest)
    log.info("commands: %d decided together, %d alone", decided, len(rest))
    if failed:
        raise failed[0]
    return decided
