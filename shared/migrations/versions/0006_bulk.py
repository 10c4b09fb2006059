"""bulk actions, their items, dashboard sessions and sign-in links

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:00:00

``bulk_actions`` is what a bulk replay, cancel or reschedule selected and how far it got;
``bulk_action_items`` what it did to each run (``filter[bulkAction]`` reads it).
``dashboard_sessions`` and ``dashboard_sign_in_links`` hold the dashboard's sign-ins
(hashes only).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bulk_actions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('environment_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('selection', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('arguments', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('total_count', sa.Integer(), nullable=False),
    sa.Column('success_count', sa.Integer(), nullable=False),
    sa.Column('failure_count', sa.Integer(), nullable=False),
    sa.Column('batch_count', sa.Integer(), nullable=False),
    sa.Column('cursor_created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cursor_run_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_bulk_actions_environment_id_environments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bulk_actions'))
    )
    op.create_index('ix_bulk_actions_env_created', 'bulk_actions', ['environment_id', 'created_at', 'id'], unique=False)
    op.create_table('bulk_action_items',
    sa.Column('bulk_action_id', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('result_run_id', sa.String(length=64), nullable=True),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['bulk_action_id'], ['bulk_actions.id'], name=op.f('fk_bulk_action_items_bulk_action_id_bulk_actions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('bulk_action_id', 'run_id', name=op.f('pk_bulk_action_items'))
    )
    op.create_table('dashboard_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('api_key_id', sa.String(length=32), nullable=False),
    sa.Column('environment_id', sa.String(length=32), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_dashboard_sessions_api_key_id_api_keys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_dashboard_sessions_environment_id_environments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_sessions'))
    )
    op.create_index(op.f('ix_dashboard_sessions_api_key_id'), 'dashboard_sessions', ['api_key_id'], unique=False)
    op.create_table('dashboard_sign_in_links',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('api_key_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_dashboard_sign_in_links_api_key_id_api_keys'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_sign_in_links'))
    )


def downgrade() -> None:
    op.drop_table('dashboard_sign_in_links')
    op.drop_index(op.f('ix_dashboard_sessions_api_key_id'), table_name='dashboard_sessions')
    op.drop_table('dashboard_sessions')
    op.drop_table('bulk_action_items')
    op.drop_index('ix_bulk_actions_env_created', table_name='bulk_actions')
    op.drop_table('bulk_actions')
