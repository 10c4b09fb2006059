"""The accept path's read: an active secret key's environment and a run of it, joined in
one round trip. It reads the keys (projects), the run (runs) and the catalogue, so it sits
above both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, exists, func, select
from sqlalchemy.orm import Session

from reprise_server.shared.projects.models import ApiKey, Environment, VersionTask
from reprise_server.shared.runs.models import Run


@dataclass(frozen=True)
class RunHead:
    """What accepting a command needs of the run it names, read with the caller's key.

    ``now`` is the database clock of that read; ``task_known`` whether any version of the
    project registers the run's task; ``locked`` whether the run's row is locked
    (``FOR UPDATE``) until the end of the transaction.
    """

    run_id: str
    task_identifier: str
    status: str
    now: datetime
    task_known: bool
    locked: bool


@dataclass(frozen=True)
class KeyAndRun:
    """The environment an active secret key belongs to, and a run of that environment."""

    project_id: str
    environment_id: str
    environment_slug: str
    run: RunHead


def _key_and_run_statement(*, lock: bool) -> Select[Any]:
    keys, envs = cast(Table, ApiKey.__table__), cast(Table, Environment.__table__)
    runs, tasks = cast(Table, Run.__table__), cast(Table, VersionTask.__table__)
    registering = envs.alias("registering")
    task_known = exists(
        select(1)
        .select_from(tasks.join(registering, registering.c.id == tasks.c.environment_id))
        .where(
            registering.c.project_id == envs.c.project_id,
            tasks.c.task_identifier == runs.c.task_identifier,
        )
    )
    stmt = (
        select(envs.c.project_id, envs.c.id, envs.c.slug, runs.c.id, runs.c.task_identifier,
               runs.c.status, func.now(), task_known)
        .select_from(
            keys.join(envs, envs.c.id == keys.c.environment_id).join(
                runs, and_(runs.c.environment_id == envs.c.id, runs.c.id == bindparam("run_id"))
            )
        )
        .where(keys.c.key_hash == bindparam("key_hash"), keys.c.revoked_at.is_(None))
    )
    return stmt.with_for_update(of=runs) if lock else stmt


# Prebuilt: the accept path is hot, and building (and cache-keying) a statement per request
# costs more than running it.
_KEY_AND_RUN = _key_and_run_statement(lock=False)
_KEY_AND_LOCKED_RUN = _key_and_run_statement(lock=True)


def find_key_and_run(
    session: Session, key_hash: str, run_id: str, *, lock: bool = False
) -> KeyAndRun | None:
    """The accept path's one round trip: the active key's environment, the run of that
    environment (locked ``FOR UPDATE`` with ``lock``), whether any version of the project
    registers the run's task, and the database clock. None if the key is unknown or
    revoked, or the run is not in its environment (the caller tells which apart).
    """
    stmt = _KEY_AND_LOCKED_RUN if lock else _KEY_AND_RUN
    row = session.execute(stmt, {"key_hash": key_hash, "run_id": run_id}).first()
    if row is None:
        return None
    project_id, environment_id, slug, run_id, task_identifier, status, now, task_known = row
    run = RunHead(run_id, task_identifier, status, now, task_known, locked=lock)
    return KeyAndRun(project_id, environment_id, slug, run)
