"""What a run status change leaves behind besides the row: a log line and a counter.

Called by :func:`shared.runs.cas.transition` (and ``transition_many``) after a
successful compare-and-set; both happen once the transaction commits, so a change that is
rolled back is neither logged nor counted. Lines carry ids (run, command, task,
environment), never payloads or outputs.

A batch transition (a sweep promoting or expiring thousands of runs at once) logs one
line per task and environment with the run ids listed (``run_ids``, at most
:data:`IDS_PER_LINE` per line) rather than one line per run, so a sweep's cost stays in
the database, not in the log handler.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy.orm import Session

from reprise_server.shared import metrics
from reprise_server.shared.db import on_commit
from reprise_server.shared.logs import current_log_context

log = logging.getLogger("reprise.runs")

IDS_PER_LINE = 500


def _command_id() -> str | None:
    value = current_log_context().get("command_id")
    return str(value) if value is not None else None


def record_change(
    session: Session, run_id: str, status: str, task: str, environment_id: str
) -> None:
    """One structured line and one counted change, after commit."""
    command_id = _command_id()
    on_commit(session, lambda: _emit(run_id, status, task, environment_id, command_id))


def changed(run_id: str, status: str, task: str, environment_id: str) -> None:
    """:func:`record_change` of a change that has committed already (a statement run on
    its own, in autocommit): the line and the count now."""
    _emit(run_id, status, task, environment_id, _command_id())


def _emit(
    run_id: str, status: str, task: str, environment_id: str, command_id: str | None
) -> None:
    metrics.observe_state_changes(status, task)
    log.info("run %s -> %s", run_id, status, extra={
        "run_id": run_id,
        "status": status,
        "task": task,
        "environment": environment_id,
        "command_id": command_id,
    })


def record_changes(session: Session, status: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """A batch of ``(run_id, task, environment_id)`` that entered ``status``."""
    if not rows:
        return
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for run_id, task, environment_id in rows:
        groups[(task, environment_id)].append(run_id)
    command_id = _command_id()

    def emit() -> None:
        for (task, environment_id), run_ids in groups.items():
            metrics.observe_state_changes(status, task, len(run_ids))
            if not log.isEnabledFor(logging.INFO):
                continue
            for start in range(0, len(run_ids), IDS_PER_LINE):
                chunk = run_ids[start : start + IDS_PER_LINE]
                log.info(
                    "%d runs -> %s",
                    len(chunk),
                    status,
                    extra={
                        "run_ids": chunk,
                        "count": len(chunk),
                        "status": status,
                        "task": task,
                        "environment": environment_id,
                        "command_id": command_id,
                    },
                )

    on_commit(session, emit)
