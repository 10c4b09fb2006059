"""SQL for projects, environments, keys and worker versions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.projects.models import (
    ENVIRONMENT_SLUGS,
    ApiKey,
    Environment,
    Project,
    VersionTask,
    WorkerVersion,
    new_uuid,
)


def get_project_by_slug(session: Session, slug: str) -> Project | None:
    return session.scalars(select(Project).where(Project.slug == slug)).first()


def first_project(session: Session) -> Project | None:
    return session.scalars(select(Project).order_by(Project.created_at).limit(1)).first()


def insert_project(session: Session, slug: str, name: str) -> Project:
    project = Project(slug=slug, name=name)
    session.add(project)
    session.flush()
    return project


def ensure_environments(
    session: Session, project_id: str, default_ttls: dict[str, int | None]
) -> None:
    for slug in ENVIRONMENT_SLUGS:
        session.execute(
            insert(Environment)
            .values(
                id=new_uuid(),
                project_id=project_id,
                slug=slug,
                default_ttl_seconds=default_ttls.get(slug),
            )
            .on_conflict_do_nothing(constraint="uq_environments_project_slug")
        )


def get_environment(session: Session, project_id: str, slug: str) -> Environment | None:
    return session.scalars(
        select(Environment).where(Environment.project_id == project_id, Environment.slug == slug)
    ).first()


def get_environment_by_id(session: Session, environment_id: str) -> Environment | None:
    return session.get(Environment, environment_id)


def list_environments(session: Session, project_id: str | None = None) -> list[Environment]:
    query = select(Environment)
    if project_id is not None:
        query = query.where(Environment.project_id == project_id)
    return list(session.scalars(query))


def insert_key(session: Session, environment_id: str, key_hash: str, display: str) -> ApiKey:
    key = ApiKey(environment_id=environment_id, key_hash=key_hash, display_prefix=display)
    session.add(key)
    session.flush()
    return key


def find_active_key(session: Session, key_hash: str) -> tuple[ApiKey, Environment] | None:
    row = session.execute(
        select(ApiKey, Environment)
        .join(Environment, Environment.id == ApiKey.environment_id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).first()
    return (row[0], row[1]) if row else None


def list_keys(session: Session) -> list[tuple[ApiKey, Environment, Project]]:
    rows = session.execute(
        select(ApiKey, Environment, Project)
        .join(Environment, Environment.id == ApiKey.environment_id)
        .join(Project, Project.id == Environment.project_id)
        .order_by(ApiKey.created_at)
    )
    return [(r[0], r[1], r[2]) for r in rows]


def revoke_key(session: Session, key_id_or_prefix: str) -> int:
    result = session.execute(
        update(ApiKey)
        .where(
            (ApiKey.id == key_id_or_prefix) | (ApiKey.display_prefix == key_id_or_prefix),
            ApiKey.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


def upsert_worker_version(
    session: Session, environment_id: str, version: str, tasks: Iterable[tuple[str, dict[str, Any]]]
) -> str:
    """Register (or re-register) a version and replace its catalogue; returns its id."""
    version_id: str = session.execute(
        insert(WorkerVersion)
        .values(id=new_uuid(), environment_id=environment_id, version=version)
        .on_conflict_do_update(
            constraint="uq_worker_versions_env_version",
            set_={"registered_at": func.now()},
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


def current_version_with_task(
    session: Session, environment_id: str, task_identifier: str
) -> tuple[str, dict[str, Any]] | None:
    """The newest registered version of the environment, if its catalogue has the task."""
    latest = (
        select(WorkerVersion.id, WorkerVersion.version)
        .where(WorkerVersion.environment_id == environment_id)
        .order_by(WorkerVersion.registered_at.desc())
        .limit(1)
        .subquery()
    )
    row = session.execute(
        select(latest.c.version, VersionTask.options).join(
            VersionTask,
            (VersionTask.worker_version_id == latest.c.id)
            & (VersionTask.task_identifier == task_identifier),
        )
    ).first()
    return (row[0], row[1]) if row else None


def task_known_in_project(session: Session, project_id: str, task_identifier: str) -> bool:
    """Whether any version registered in any environment of the project has this task."""
    return (
        session.execute(
            select(VersionTask.task_identifier)
            .join(Environment, Environment.id == VersionTask.environment_id)
            .where(
                Environment.project_id == project_id,
                VersionTask.task_identifier == task_identifier,
            )
            .limit(1)
        ).first()
        is not None
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
