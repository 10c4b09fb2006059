"""project ref: each project's public reference (proj_ + 20 characters), backfilled

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 07:35:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('projects', sa.Column('ref', sa.String(length=32), nullable=True))
    # Existing projects get a ref of the same shape as new ones: proj_ and 20 lowercase
    # hex digits (letters and digits), from a random UUID each.
    op.execute(
        "UPDATE projects SET ref = 'proj_' || substr(md5(gen_random_uuid()::text || id), 1, 20)"
        " WHERE ref IS NULL"
    )
    op.alter_column('projects', 'ref', existing_type=sa.String(length=32), nullable=False)
    op.create_unique_constraint(op.f('uq_projects_ref'), 'projects', ['ref'])


def downgrade() -> None:
    op.drop_constraint(op.f('uq_projects_ref'), 'projects', type_='unique')
    op.drop_column('projects', 'ref')
