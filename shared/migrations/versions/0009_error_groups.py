"""error groups: the groups ignored on the Overview page, per environment

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 06:49:55
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ignored_error_groups',
    sa.Column('environment_id', sa.String(length=32), nullable=False),
    sa.Column('task_identifier', sa.String(length=128), nullable=False),
    sa.Column('fingerprint', sa.String(length=16), nullable=False),
    sa.Column('error_name', sa.String(length=255), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('ignored_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_ignored_error_groups_environment_id_environments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('environment_id', 'task_identifier', 'fingerprint', name=op.f('pk_ignored_error_groups'))
    )


def downgrade() -> None:
    op.drop_table('ignored_error_groups')
