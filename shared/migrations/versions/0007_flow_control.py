"""flow control: concurrency limits, their keys, slots and admission line; queues

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 06:00:31

``concurrency_limits`` are the limits worker versions declare (bounds with their runtime
overrides, and the count of slots held); ``concurrency_keys`` their per-key counters and
line heads; ``concurrency_slots`` who holds a slot; ``admission_line`` who waits for one.
``queues`` are the task and named queues (pause state), filled here from the catalogues
already registered. ``runs`` gains the limits a run holds and why it is held back.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('concurrency_limits',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('environment_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('total_base', sa.Integer(), nullable=True),
    sa.Column('per_key_base', sa.Integer(), nullable=True),
    sa.Column('total_override', sa.Integer(), nullable=True),
    sa.Column('per_key_override', sa.Integer(), nullable=True),
    sa.Column('overridden_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('running', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_concurrency_limits_environment_id_environments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_concurrency_limits'))
    )
    op.create_index('uq_concurrency_limits_env_name', 'concurrency_limits', ['environment_id', 'name'], unique=True)
    op.create_table('queues',
    sa.Column('environment_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=160), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=8), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_queues_environment_id_environments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('environment_id', 'name', name=op.f('pk_queues')),
    sa.UniqueConstraint('id', name=op.f('uq_queues_id'))
    )
    op.create_table('admission_line',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('limit_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=256), nullable=False),
    sa.Column('rank', sa.DateTime(timezone=True), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['limit_id'], ['concurrency_limits.id'], name=op.f('fk_admission_line_limit_id_concurrency_limits'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_admission_line_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'limit_id', name=op.f('pk_admission_line'))
    )
    op.create_index('ix_admission_line_order', 'admission_line', ['limit_id', 'key', 'rank', 'run_id'], unique=False)
    op.create_table('concurrency_keys',
    sa.Column('limit_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=256), nullable=False),
    sa.Column('running', sa.Integer(), nullable=False),
    sa.Column('waiting', sa.Integer(), nullable=False),
    sa.Column('head_rank', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cap', sa.Integer(), nullable=True),
    sa.Column('override', sa.Integer(), nullable=True),
    sa.Column('override_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['limit_id'], ['concurrency_limits.id'], name=op.f('fk_concurrency_keys_limit_id_concurrency_limits'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('limit_id', 'key', name=op.f('pk_concurrency_keys'))
    )
    op.create_index('ix_concurrency_keys_ready', 'concurrency_keys', ['limit_id', 'head_rank'], unique=False, postgresql_where=sa.text('head_rank IS NOT NULL AND (cap IS NULL OR running < cap)'))
    op.create_table('concurrency_slots',
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('limit_id', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=256), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['limit_id'], ['concurrency_limits.id'], name=op.f('fk_concurrency_slots_limit_id_concurrency_limits'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_concurrency_slots_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'limit_id', name=op.f('pk_concurrency_slots'))
    )
    op.create_index('ix_concurrency_slots_limit_key', 'concurrency_slots', ['limit_id', 'key'], unique=False)
    op.add_column('runs', sa.Column('concurrency_limits', postgresql.ARRAY(sa.String(length=128)), nullable=True))
    op.add_column('runs', sa.Column('admission', sa.String(length=8), nullable=True))
    op.create_index('ix_runs_env_admission', 'runs', ['environment_id', 'admission'], unique=False, postgresql_where=sa.text('admission IS NOT NULL'))
    # The queues of the versions registered before this migration (a worker's next
    # registration keeps them up to date).
    op.execute("""
        INSERT INTO queues (environment_id, name, id, type, paused)
        SELECT DISTINCT environment_id, 'task/' || task_identifier,
               'queue_' || md5(environment_id || '/task/' || task_identifier), 'task', false
        FROM version_tasks
        UNION
        SELECT DISTINCT environment_id, options->>'queue',
               'queue_' || md5(environment_id || '/' || (options->>'queue')), 'custom', false
        FROM version_tasks WHERE options->>'queue' IS NOT NULL
        ON CONFLICT DO NOTHING
    """)


def downgrade() -> None:
    op.drop_index('ix_runs_env_admission', table_name='runs', postgresql_where=sa.text('admission IS NOT NULL'))
    op.drop_column('runs', 'admission')
    op.drop_column('runs', 'concurrency_limits')
    op.drop_index('ix_concurrency_slots_limit_key', table_name='concurrency_slots')
    op.drop_table('concurrency_slots')
    op.drop_index('ix_concurrency_keys_ready', table_name='concurrency_keys', postgresql_where=sa.text('head_rank IS NOT NULL AND (cap IS NULL OR running < cap)'))
    op.drop_table('concurrency_keys')
    op.drop_index('ix_admission_line_order', table_name='admission_line')
    op.drop_table('admission_line')
    op.drop_table('queues')
    op.drop_index('uq_concurrency_limits_env_name', table_name='concurrency_limits')
    op.drop_table('concurrency_limits')
