"""SQL for projects, environments, keys and worker versions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, delete, exists, func, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from reprise_server.shared.projects.models import (
    ENVIRONMENT_SLUGS,
    ApiKey,
    Environment,
    Project,
    UsedPublicToken,
    VersionTask,
    WorkerVersion,
    new_uuid,
)
from reprise_server.shared.runs.models import Run


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


def insert_key(
    session: Session, environment_id: str, key_hash: str, display: str,
    secret_ciphertext: str | None = None,
) -> ApiKey:
    key = ApiKey(
        environment_id=environment_id, key_hash=key_hash, display_prefix=display,
        secret_ciphertext=secret_ciphertext,
    )
    session.add(key)
    session.flush()
    return key


def key_ciphertext(session: Session, key_hash: str) -> str | None:
    return session.scalar(select(ApiKey.secret_ciphertext).where(ApiKey.key_hash == key_hash))


def store_key_ciphertext(session: Session, key_hash: str, ciphertext: str) -> None:
    session.execute(
        update(ApiKey).where(ApiKey.key_hash == key_hash).values(secret_ciphertext=ciphertext)
    )


def spend_token(session: Session, token_hash: str, expires_at: datetime) -> bool:
    """Record a one-time-use token as used; False if it already was. Spent tokens that
    have expired are dropped on the way (they could not be used again anyway)."""
    session.execute(delete(UsedPublicToken).where(UsedPublicToken.expires_at < func.now()))
    inserted = session.execute(
        insert(UsedPublicToken)
        .values(token_hash=token_hash, expires_at=expires_at)
        .on_conflict_do_nothing()
        .returning(UsedPublicToken.token_hash)
    ).first()
    return inserted is not None


def active_key_ciphertexts(session: Session, environment_id: str) -> list[str]:
    """The encrypted secrets of the environment's keys that are not revoked."""
    return list(
        session.scalars(
            select(ApiKey.secret_ciphertext).where(
                ApiKey.environment_id == environment_id,
                ApiKey.revoked_at.is_(None),
                ApiKey.secret_ciphertext.is_not(None),
            )
        )
    )


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


@dataclass(frozen=True)
class CreationContext:
    """What creating a run in an environment needs, read in one round trip: the database
    clock, the environment's default TTL and, if the environment's current version has
    the task, that version and the task's registered options."""

    now: datetime
    default_ttl_seconds: int | None
    version: tuple[str, dict[str, Any]] | None


def _creation_context_statement() -> Select[Any]:
    latest = (
        select(WorkerVersion.id, WorkerVersion.version)
        .where(WorkerVersion.environment_id == bindparam("environment_id"))
        .order_by(WorkerVersion.registered_at.desc())
        .limit(1)
        .subquery()
    )
    task = (
        select(latest.c.version, VersionTask.options)
        .join(
            VersionTask,
            (VersionTask.worker_version_id == latest.c.id)
            & (VersionTask.task_identifier == bindparam("task_identifier")),
        )
        .subquery()
    )
    return (
        select(func.now(), Environment.default_ttl_seconds, task.c.version, task.c.options)
        .select_from(Environment)
        .outerjoin(task, true())
        .where(Environment.id == bindparam("environment_id"))
    )


# Prebuilt: every trigger runs it, and building it costs more than running it.
_CREATION_CONTEXT = _creation_context_statement()


def creation_context(session: Session, environment_id: str, task_identifier: str) -> CreationContext:
    row = session.connection().execute(
        _CREATION_CONTEXT, {"environment_id": environment_id, "task_identifier": task_identifier}
    ).one()
    version = (row[2], row[3]) if row[2] is not None else None
    return CreationContext(row[0], row[1], version)


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


def version_task_options(
    session: Session, environment_id: str, version: str, task_identifier: str
) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``version`` is registered in the environment, and the task's options in its
    catalogue (None if the catalogue lacks the task)."""
    row = session.execute(
        select(WorkerVersion.id, VersionTask.options)
        .outerjoin(
            VersionTask,
            (VersionTask.worker_version_id == WorkerVersion.id)
            & (VersionTask.task_identifier == task_identifier),
        )
        .where(WorkerVersion.environment_id == environment_id, WorkerVersion.version == version)
    ).first()
    if row is None:
        return False, None
    return True, (dict(row[1]) if row[1] is not None else None)
