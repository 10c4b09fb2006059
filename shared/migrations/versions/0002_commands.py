"""commands: target environment, read-your-writes indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:11:56.378071

``commands.target_environment_id`` names the environment a command's effect lands in
(a replay may target another environment of the project); reads of that environment
apply its pending commands inline. Pending commands are now looked up by the run their
effect lands on (``target_run_id``), so the index on ``run_id`` is replaced.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('commands', sa.Column('target_environment_id', sa.String(length=32), nullable=True))
    op.execute("UPDATE commands SET target_environment_id = environment_id")
    op.execute("UPDATE commands SET target_run_id = run_id WHERE target_run_id IS NULL")
    op.alter_column('commands', 'target_environment_id', nullable=False)
    op.drop_index(op.f('ix_commands_run_pending'), table_name='commands', postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index('ix_commands_target_env_pending', 'commands', ['target_environment_id', 'created_at'], unique=False, postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index('ix_commands_target_pending', 'commands', ['target_run_id'], unique=False, postgresql_where=sa.text("status = 'PENDING'"))
    op.create_foreign_key(op.f('fk_commands_target_environment_id_environments'), 'commands', 'environments', ['target_environment_id'], ['id'], ondelete='CASCADE')


def downgrade() -> None:
    op.drop_constraint(op.f('fk_commands_target_environment_id_environments'), 'commands', type_='foreignkey')
    op.drop_index('ix_commands_target_pending', table_name='commands', postgresql_where=sa.text("status = 'PENDING'"))
    op.drop_index('ix_commands_target_env_pending', table_name='commands', postgresql_where=sa.text("status = 'PENDING'"))
    op.create_index(op.f('ix_commands_run_pending'), 'commands', ['run_id'], unique=False, postgresql_where=sa.text("status = 'PENDING'"))
    op.drop_column('commands', 'target_environment_id')
