"""run logs: the lines a run's task wrote, captured by the worker

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 06:45:14
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('run_logs',
    sa.Column('seq', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('environment_id', sa.String(length=32), nullable=False),
    sa.Column('attempt_number', sa.Integer(), nullable=False),
    sa.Column('logged_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('logger', sa.String(length=200), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('exception', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_logs_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_run_logs'))
    )
    op.create_index('ix_run_logs_logged_at', 'run_logs', ['logged_at'], unique=False)
    op.create_index('ix_run_logs_run_seq', 'run_logs', ['run_id', 'seq'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_run_logs_run_seq', table_name='run_logs')
    op.drop_index('ix_run_logs_logged_at', table_name='run_logs')
    op.drop_table('run_logs')
