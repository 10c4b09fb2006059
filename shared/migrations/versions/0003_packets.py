"""packets: offloaded payloads; idempotency keys that expire

Revision ID: 0003
Revises: 0002

``packets`` indexes every packet the SDK uploads (``PUT /api/v2/packets/{path}``): its
bytes are in ``data`` (store ``postgres``) or in an S3-compatible bucket under
``object_key`` (store ``s3``). ``runs.idempotency_key_expires_at`` is when a run's
idempotency key stops deduplicating (``idempotencyKeyTTL``, default 30 days).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'packets',
        sa.Column('environment_id', sa.String(length=32), nullable=False),
        sa.Column('path', sa.String(length=1024), nullable=False),
        sa.Column('content_type', sa.String(length=100), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('store', sa.String(length=16), nullable=False),
        sa.Column('object_key', sa.String(length=1200), nullable=True),
        sa.Column('data', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], name=op.f('fk_packets_environment_id_environments'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('environment_id', 'path', name=op.f('pk_packets')),
    )
    op.add_column('runs', sa.Column('idempotency_key_expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('runs', 'idempotency_key_expires_at')
    op.drop_table('packets')
