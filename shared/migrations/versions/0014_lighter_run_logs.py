"""lighter run logs: no foreign key to runs, no logged_at index (retention walks seq)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 11:45:00
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint('fk_run_logs_run_id_runs', 'run_logs', type_='foreignkey')
    op.drop_index('ix_run_logs_logged_at', table_name='run_logs')


def downgrade() -> None:
    op.create_index('ix_run_logs_logged_at', 'run_logs', ['logged_at'], unique=False)
    op.create_foreign_key('fk_run_logs_run_id_runs', 'run_logs', 'runs', ['run_id'], ['id'],
                          ondelete='CASCADE')
