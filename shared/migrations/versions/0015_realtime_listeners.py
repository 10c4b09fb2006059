"""realtime notifications only while an api process listens

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 02:20:00

* ``realtime_listeners``: the api processes whose ``LISTEN reprise_runs`` some realtime
  subscription is waiting on, each row kept alive by its process (``expires_at``).
* ``runs_realtime_change`` still stamps ``realtime_xid`` on every write realtime shows, but
  sends ``NOTIFY reprise_runs`` only while a registration has not expired. A notifying
  transaction holds Postgres's notification-queue lock through its commit, so with nobody
  listening the notifications cost every run write its share of a serialised commit.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STAMPED = """
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
"""
_NOTIFY = """
            PERFORM pg_notify(
                'reprise_runs',
                json_build_object(
                    'e', NEW.environment_id, 'r', NEW.id, 'b', NEW.batch_id, 't', NEW.tags
                )::text
            );
"""


def _function(notify: str) -> str:
    return (
        "CREATE OR REPLACE FUNCTION runs_realtime_change() RETURNS trigger AS $$\nBEGIN"
        f"{_STAMPED}{notify}    END IF;\n    RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql"
    )


def upgrade() -> None:
    op.create_table(
        "realtime_listeners",
        sa.Column("listener", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("listener", name=op.f("pk_realtime_listeners")),
    )
    op.execute(_function(
        "        IF EXISTS (SELECT FROM realtime_listeners WHERE expires_at > now()) THEN"
        f"{_NOTIFY}        END IF;\n"
    ))


def downgrade() -> None:
    op.execute(_function(_NOTIFY.replace("\n    ", "\n")))
    op.drop_table("realtime_listeners")
