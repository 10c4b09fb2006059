"""SQL of a worker version's registration: the version and its task catalogue, and when
(and in which order) versions registered."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.orm import Session

from reprise_server.shared.projects.models import VersionTask, WorkerVersion, new_uuid


def upsert_worker_version(
    session: Session, environment_id: str, version: str,
    tasks: Iterable[tuple[str, dict[str, Any]]], catalogue_digest: str | None = None,
) -> str:
    """Register (or re-register) a version and replace its catalogue; returns its id."""
    version_id: str = session.execute(
        insert(WorkerVersion)
        .values(
            id=new_uuid(), environment_id=environment_id, version=version,
            catalogue_digest=catalogue_digest,
        )
        .on_conflict_do_update(
            constraint="uq_worker_versions_env_version",
            set_={"registered_at": func.now(), "catalogue_digest": catalogue_digest},
        )
        .returning(WorkerVersion.id)
    ).scalar_one()
    session.execute(delete(VersionTask).where(VersionTask.worker_version_id == version_id))
    rows = [
        {
            "worker_version_id": version_id,
            "task_identifier": task_id,
            "environment_id": environment_id,
            "options": options,
        }
        for task_id, options in tasks
    ]
    if rows:
        session.execute(insert(VersionTask).values(rows))
    return version_id


def current_registrations(
    session: Session, environment_ids: Collection[str]
) -> dict[str, WorkerVersion]:
    """Each environment's most recently registered version (environments with none are
    left out)."""
    if not environment_ids:
        return {}
    latest = session.scalars(
        select(WorkerVersion)
        .where(WorkerVersion.environment_id.in_(list(environment_ids)))
        .order_by(WorkerVersion.environment_id, WorkerVersion.registered_at.desc())
        .ext(distinct_on(WorkerVersion.environment_id))
    )
    return {row.environment_id: row for row in latest}


def touch_registrations(session: Session, version_ids: Collection[str]) -> None:
    """Mark these registrations as made again now, locking them in id order (boots running
    at once touch the same rows without waiting on each other in a cycle)."""
    if not version_ids:
        return
    locked = (
        select(WorkerVersion.id)
        .where(WorkerVersion.id.in_(list(version_ids)))
        .order_by(WorkerVersion.id)
        .with_for_update()
    )
    session.execute(
        update(WorkerVersion)
        .where(WorkerVersion.id.in_(locked))
        .values(registered_at=func.now())
    )


def version_ordinal(session: Session, environment_id: str, version: str | None) -> int:
    """1-based position of ``version`` in the environment's versions by registration time
    (Strait's integer ``job_version``); 0 for no version or an unknown one."""
    if not version:
        return 0
    registered = (
        select(WorkerVersion.registered_at)
        .where(WorkerVersion.environment_id == environment_id, WorkerVersion.version == version)
        .scalar_subquery()
    )
    return int(
        session.execute(
            select(func.count()).where(
                WorkerVersion.environment_id == environment_id,
                WorkerVersion.registered_at <= registered,
            )
        ).scalar_one()
    )


def latest_registration(session: Session) -> WorkerVersion | None:
    """The worker version registered (or re-registered) most recently, in any environment."""
    return session.scalars(
        select(WorkerVersion).order_by(WorkerVersion.registered_at.desc()).limit(1)
    ).first()
