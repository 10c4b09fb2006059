"""worker_versions.catalogue_digest: a re-registration of the same catalogue is a no-op

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'worker_versions', sa.Column('catalogue_digest', sa.String(length=64), nullable=True)
    )


def downgrade() -> None:
    op.drop_column('worker_versions', 'catalogue_digest')
