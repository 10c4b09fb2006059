"""runs.concurrency_override: the named limits a trigger's ``options.concurrency`` put in
place of its task's, so that a replay carries them (``concurrency_limits`` holds the
limits the run holds, declared and named alike, and cannot tell the two apart)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 11:50:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('concurrency_override', postgresql.ARRAY(sa.String(length=128)), nullable=True))


def downgrade() -> None:
    op.drop_column('runs', 'concurrency_override')
