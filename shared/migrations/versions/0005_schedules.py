"""schedules: cron schedules in Postgres, and the run each tick created

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:00:00

``schedules`` holds every schedule (imperative ones from the API, declarative ones from
``@task(cron=…)``); the beat sweep walks ``ix_schedules_due`` (active schedules by
``next_tick_at``). ``runs.schedule_id`` / ``runs.schedule_tick_at`` name the tick that
created a run; ``uq_runs_schedule_tick`` makes that one run per tick, whatever races.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('schedules',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('project_id', sa.String(length=32), nullable=False),
    sa.Column('environment_id', sa.String(length=32), nullable=False),
    sa.Column('task_identifier', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('cron', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.Text(), nullable=True),
    sa.Column('deduplication_key', sa.String(length=256), nullable=False),
    sa.Column('user_provided_deduplication_key', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('next_tick_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_tick_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_schedules_environment_id_environments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_schedules_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules')),
    sa.UniqueConstraint('environment_id', 'type', 'deduplication_key', name='uq_schedules_env_type_key')
    )
    op.create_index('ix_schedules_due', 'schedules', ['next_tick_at'], unique=False, postgresql_where=sa.text('active'))
    op.create_index('ix_schedules_env_created', 'schedules', ['environment_id', sa.text('created_at DESC'), sa.text('id DESC')], unique=False)
    op.add_column('runs', sa.Column('schedule_id', sa.String(length=64), nullable=True))
    op.add_column('runs', sa.Column('schedule_tick_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('uq_runs_schedule_tick', 'runs', ['schedule_id', 'schedule_tick_at'], unique=True, postgresql_where=sa.text('schedule_id IS NOT NULL'))
    op.create_index('ix_runs_schedule_created', 'runs', ['schedule_id', sa.text('created_at DESC')], unique=False, postgresql_where=sa.text('schedule_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_runs_schedule_created', table_name='runs', postgresql_where=sa.text('schedule_id IS NOT NULL'))
    op.drop_index('uq_runs_schedule_tick', table_name='runs', postgresql_where=sa.text('schedule_id IS NOT NULL'))
    op.drop_column('runs', 'schedule_tick_at')
    op.drop_column('runs', 'schedule_id')
    op.drop_index('ix_schedules_env_created', table_name='schedules')
    op.drop_index('ix_schedules_due', table_name='schedules', postgresql_where=sa.text('active'))
    op.drop_table('schedules')
