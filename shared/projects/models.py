from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base
from reprise_server.shared.ids import new_project_ref

ENVIRONMENT_SLUGS = ("dev", "staging", "prod")
KEY_PREFIXES = {"dev": "tr_dev_", "staging": "tr_stg_", "prod": "tr_prod_"}


def new_uuid() -> str:
    return uuid.uuid4().hex


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    # The project's public reference (``proj_`` + 20 characters), as the Trigger.dev API
    # names a project (``GET /api/v1/projects/{ref}/runs``).
    ref: Mapped[str] = mapped_column(String(32), unique=True, default=new_project_ref)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("project_id", "slug", name="uq_environments_project_slug"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(16))
    default_ttl_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # First characters of the key, shown by `reprise keys list` so people can tell keys apart.
    display_prefix: Mapped[str] = mapped_column(String(24))
    # The key itself, encrypted with REPRISE_SECRET_KEY (AES-GCM): the official SDK signs
    # public tokens with the secret key as the HMAC secret, so verifying them needs it.
    secret_ciphertext: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class WorkerVersion(Base):
    __tablename__ = "worker_versions"
    __table_args__ = (
        UniqueConstraint("environment_id", "version", name="uq_worker_versions_env_version"),
        # The environment's current version (its newest), read by every trigger: one
        # index entry, however many versions were deployed before it.
        Index("ix_worker_versions_env_registered", "environment_id", text("registered_at DESC")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(100))
    registered_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # A digest of the catalogue registered with the version: a worker booting with the
    # environment's current version and catalogue has nothing to write.
    catalogue_digest: Mapped[str | None] = mapped_column(String(64))


class VersionTask(Base):
    """One task of a worker version's catalogue, with its default options."""

    __tablename__ = "version_tasks"
    __table_args__ = (
        Index("ix_version_tasks_env_task", "environment_id", "task_identifier"),
    )

    worker_version_id: Mapped[str] = mapped_column(
        ForeignKey("worker_versions.id", ondelete="CASCADE"), primary_key=True
    )
    task_identifier: Mapped[str] = mapped_column(String(128), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class UsedPublicToken(Base):
    """A one-time-use public token (``otu`` claim) that has triggered once; kept until it
    expires so a second use is refused."""

    __tablename__ = "used_public_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime] = mapped_column(server_default=func.now())
