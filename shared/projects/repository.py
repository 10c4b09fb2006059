"""SQL for projects, environments, keys and one-time tokens (the catalogue of worker
versions is :mod:`shared.projects.catalogue`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from reprise_server.shared.projects.models import (
    ENVIRONMENT_SLUGS,
    ApiKey,
    Environment,
    Project,
    UsedPublicToken,
    new_uuid,
)


def get_project_by_slug(session: Session, slug: str) -> Project | None:
    return session.scalars(select(Project).where(Project.slug == slug)).first()


def project_ref(session: Session, project_id: str) -> str | None:
    return session.scalar(select(Project.ref).where(Project.id == project_id))


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


def list_keys(session: Session, project_id: str | None = None
              ) -> list[tuple[ApiKey, Environment, Project]]:
    query = (
        select(ApiKey, Environment, Project)
        .join(Environment, Environment.id == ApiKey.environment_id)
        .join(Project, Project.id == Environment.project_id)
        .order_by(ApiKey.created_at)
    )
    if project_id is not None:
        query = query.where(Environment.project_id == project_id)
    rows = session.execute(query)
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
