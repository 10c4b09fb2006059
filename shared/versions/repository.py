"""SQL of a worker version's registration: the version and its task catalogue, and when
(and in which order) versions registered."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from reprise_server.shared.projects.models import WorkerVersion, new_uuid


def upsert_worker_version(
    session: Session, environment_id: str, version: str,
    tasks: Iterable[tuple[str, dict[str, Any]]], catalogue_digest: str | None = None,
) -> str:
    """Register (or re-register) a version and replace its catalogue; returns its id."""
    return upsert_worker_versions(
        session, [environment_id], version, tasks, catalogue_digest
    )[environment_id]


def upsert_worker_versions(
    session: Session, environment_ids: Collection[str], version: str,
    tasks: Iterable[tuple[str, dict[str, Any]]], catalogue_digest: str | None = None,
    *, registered: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Register (or re-register) a version in each of these environments and replace its
    catalogue there; returns each environment's version id. Three statements however many
    environments: a worker process registers in every environment it serves when it boots.

    ``registered``: environments whose registration of this version (its id given) already
    has this catalogue; they are only marked as registered again now, their catalogue left
    as it is. By the same statement: every row is upserted (so locked) in environment
    order, the one order boots running at once wait for each other in (a boot touching
    some rows and upserting others in two passes could wait for another in a cycle)."""
    registered = dict(registered or {})
    envs = sorted(set(environment_ids) - set(registered))
    ids = {env: new_uuid() for env in envs} | registered
    if not ids:
        return {}
    order = sorted(ids)
    versions: dict[str, str] = {
        env: version_id for env, version_id in session.execute(_UPSERT_VERSIONS, {
            "ids": [ids[env] for env in order], "envs": order, "version": version,
            "digest": catalogue_digest,
        })
    }
    catalogue = list(tasks)
    if envs:
        version_ids = [versions[env] for env in envs]
        session.execute(_DELETE_TASKS, {"version_ids": version_ids})
        if catalogue:
            session.execute(_INSERT_TASKS, {
                "version_ids": version_ids, "envs": envs,
                "tasks": [task_id for task_id, _ in catalogue],
                "options": [json.dumps(options) for _, options in catalogue],
            })
    return versions


# A row given its own id is one already registered with this catalogue: its time moves,
# its digest stays (a concurrent boot that registered another catalogue since keeps it,
# with the tasks it wrote).
_UPSERT_VERSIONS = text(
    """
    INSERT INTO worker_versions (id, environment_id, version, catalogue_digest)
    SELECT id, env, :version, :digest
    FROM unnest(CAST(:ids AS varchar[]), CAST(:envs AS varchar[])) AS e(id, env)
    ORDER BY env
    ON CONFLICT ON CONSTRAINT uq_worker_versions_env_version
    DO UPDATE SET registered_at = now(), catalogue_digest = CASE
        WHEN worker_versions.id = excluded.id THEN worker_versions.catalogue_digest
        ELSE excluded.catalogue_digest END
    RETURNING environment_id, id
    """
)
_DELETE_TASKS = text(
    "DELETE FROM version_tasks WHERE worker_version_id = ANY(CAST(:version_ids AS varchar[]))"
)
# Every task of the catalogue in every environment's version: one row each.
_INSERT_TASKS = text(
    """
    INSERT INTO version_tasks (worker_version_id, task_identifier, environment_id, options)
    SELECT v.id, t.task, v.env, t.options
    FROM unnest(CAST(:version_ids AS varchar[]), CAST(:envs AS varchar[])) AS v(id, env)
    CROSS JOIN unnest(CAST(:tasks AS varchar[]), CAST(:options AS jsonb[])) AS t(task, options)
    ORDER BY v.env, t.task
    """
)


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
