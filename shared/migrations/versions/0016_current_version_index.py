"""an environment's current worker version in one index entry

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 02:00:00

Every trigger reads the environment's newest worker version (``ORDER BY registered_at
DESC LIMIT 1``), and so do the claim's limits lookup and the pending-version sweep.
Without this index Postgres read every version the environment ever registered and
sorted them, per trigger.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_worker_versions_env_registered", "worker_versions",
        ["environment_id", sa.text("registered_at DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_worker_versions_env_registered", table_name="worker_versions")
