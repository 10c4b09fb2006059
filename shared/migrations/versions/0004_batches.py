"""batches, realtime change tracking, public-token verification

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:00:00

* ``batches`` and ``batch_items`` (``POST /api/v3/batches`` and its item stream) and an
  index on ``runs.batch_id``.
* ``runs.realtime_xid`` and the trigger ``runs_realtime_change``: every insert, and every
  update of what realtime shows (status, dates, output, error, metadata, tags, usage),
  stamps the row with its transaction id and sends ``NOTIFY reprise_runs`` (delivered at
  commit only) with ``{"e": environment id, "r": run id, "b": batch id, "t": tags}``. Heartbeats and dispatch
  stamps change neither, so they wake no subscriber.
* ``api_keys.secret_ciphertext`` (the key, encrypted, to verify JWTs the SDK signs with
  it) and ``used_public_tokens`` (one-time-use trigger tokens already spent).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REALTIME_FUNCTION = """
CREATE OR REPLACE FUNCTION runs_realtime_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.updated_at IS DISTINCT FROM OLD.updated_at
       OR NEW.delayed_until IS DISTINCT FROM OLD.delayed_until
       OR NEW.duration_ms IS DISTINCT FROM OLD.duration_ms
       OR NEW.tags IS DISTINCT FROM OLD.tags
       OR NEW.metadata IS DISTINCT FROM OLD.metadata
       OR NEW.error IS DISTINCT FROM OLD.error
       OR NEW.output IS DISTINCT FROM OLD.output THEN
        NEW.realtime_xid := pg_current_xact_id()::text::bigint;
        PERFORM pg_notify(
            'reprise_runs',
            json_build_object(
                'e', NEW.environment_id, 'r', NEW.id, 'b', NEW.batch_id, 't', NEW.tags
            )::text
        );
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=32), nullable=False),
        sa.Column("environment_id", sa.String(length=32), nullable=False),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("task_identifiers", postgresql.ARRAY(sa.String(length=128)), nullable=True),
        sa.Column("parent_run_id", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("idempotency_key_hash", sa.String(length=128), nullable=True),
        sa.Column("request_idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["environment_id"], ["environments.id"], name=op.f("fk_batches_environment_id_environments"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_batches_project_id_projects"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(
        "uq_batches_idempotency", "batches", ["environment_id", "idempotency_key_hash"],
        unique=True, postgresql_where=sa.text("idempotency_key_hash IS NOT NULL"),
    )
    op.create_index(
        "uq_batches_request_idempotency", "batches", ["environment_id", "request_idempotency_key"],
        unique=True, postgresql_where=sa.text("request_idempotency_key IS NOT NULL"),
    )
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("task_identifier", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name=op.f("fk_batch_items_batch_id_batches"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "index", name=op.f("pk_batch_items")),
    )
    op.create_index(
        "ix_runs_batch", "runs", ["batch_id"], postgresql_where=sa.text("batch_id IS NOT NULL")
    )
    op.add_column("runs", sa.Column("realtime_xid", sa.BigInteger(), nullable=True))
    op.execute(REALTIME_FUNCTION)
    op.execute(
        "CREATE TRIGGER runs_realtime_change BEFORE INSERT OR UPDATE ON runs "
        "FOR EACH ROW EXECUTE FUNCTION runs_realtime_change()"
    )
    op.add_column("api_keys", sa.Column("secret_ciphertext", sa.String(length=200), nullable=True))
    op.create_table(
        "used_public_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_used_public_tokens")),
    )


def downgrade() -> None:
    op.drop_table("used_public_tokens")
    op.drop_column("api_keys", "secret_ciphertext")
    op.execute("DROP TRIGGER IF EXISTS runs_realtime_change ON runs")
    op.execute("DROP FUNCTION IF EXISTS runs_realtime_change()")
    op.drop_column("runs", "realtime_xid")
    op.drop_index("ix_runs_batch", table_name="runs")
    op.drop_table("batch_items")
    op.drop_table("batches")
