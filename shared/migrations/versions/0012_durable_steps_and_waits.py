"""durable steps and waits: run_steps (a run's record), waitpoints, waitpoint_blocks;
runs.resume_count and runs.waitpoint_id

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:20:20.377771
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('waitpoints',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('environment_id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=12), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('complete_after', sa.DateTime(timezone=True), nullable=True),
    sa.Column('output', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('output_is_error', sa.Boolean(), nullable=False),
    sa.Column('idempotency_key', sa.Text(), nullable=True),
    sa.Column('idempotency_key_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tags', postgresql.ARRAY(sa.String(length=128)), nullable=False),
    sa.Column('callback_hash', sa.String(length=64), nullable=True),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('timer_armed', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_waitpoints_environment_id_environments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_waitpoints_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitpoints'))
    )
    op.create_index('ix_waitpoints_due', 'waitpoints', ['complete_after'], unique=False, postgresql_where=sa.text("status = 'WAITING' AND complete_after IS NOT NULL"))
    op.create_index('ix_waitpoints_env_created', 'waitpoints', ['environment_id', sa.literal_column('created_at DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_waitpoints_tags', 'waitpoints', ['tags'], unique=False, postgresql_using='gin')
    op.create_index('uq_waitpoints_idempotency', 'waitpoints', ['environment_id', 'idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.create_table('run_steps',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('output', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('detail', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('attempt_number', sa.Integer(), nullable=False),
    sa.Column('copied_from', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_steps_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'position', name=op.f('pk_run_steps'))
    )
    op.create_table('waitpoint_blocks',
    sa.Column('waitpoint_id', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_waitpoint_blocks_run_id_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['waitpoint_id'], ['waitpoints.id'], name=op.f('fk_waitpoint_blocks_waitpoint_id_waitpoints'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('waitpoint_id', 'run_id', name=op.f('pk_waitpoint_blocks'))
    )
    op.create_index('ix_waitpoint_blocks_run', 'waitpoint_blocks', ['run_id'], unique=False)
    op.add_column('runs', sa.Column('resume_count', sa.Integer(), server_default='0', nullable=False))
    op.add_column('runs', sa.Column('waitpoint_id', sa.String(length=64), nullable=True))
    op.add_column(
        'runs',
        sa.Column('resumed_from', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )


def downgrade() -> None:
    op.drop_column('runs', 'resumed_from')
    op.drop_column('runs', 'waitpoint_id')
    op.drop_column('runs', 'resume_count')
    op.drop_index('ix_waitpoint_blocks_run', table_name='waitpoint_blocks')
    op.drop_table('waitpoint_blocks')
    op.drop_table('run_steps')
    op.drop_index('uq_waitpoints_idempotency', table_name='waitpoints', postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index('ix_waitpoints_tags', table_name='waitpoints', postgresql_using='gin')
    op.drop_index('ix_waitpoints_env_created', table_name='waitpoints')
    op.drop_index('ix_waitpoints_due', table_name='waitpoints', postgresql_where=sa.text("status = 'WAITING' AND complete_after IS NOT NULL"))
    op.drop_table('waitpoints')
