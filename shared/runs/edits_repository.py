"""The SQL of run edits that are not status changes: metadata, tags, idempotency keys."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from reprise_server.shared.runs.models import Run


def lock_run_in(session: Session, environment_id: str, run_id: str) -> Run | None:
    """The run of the environment, its row locked until the transaction ends."""
    return session.scalars(
        select(Run).where(Run.id == run_id, Run.environment_id == environment_id)
        .with_for_update()
    ).first()


def set_metadata(session: Session, run_id: str, metadata: dict[str, Any]) -> None:
    session.execute(
        update(Run).where(Run.id == run_id).values(metadata_=metadata, updated_at=func.now())
    )


def set_tags(session: Session, run_id: str, tags: list[str]) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(tags=tags, updated_at=func.now()))


def release_idempotency_keys(
    session: Session, environment_id: str, task_identifier: str, key_hash: str
) -> int:
    """Forget the key on the environment's runs of the task; how many held it."""
    result = session.execute(
        update(Run)
        .where(
            Run.environment_id == environment_id,
            Run.task_identifier == task_identifier,
            Run.idempotency_key_hash == key_hash,
        )
        .values(idempotency_key_hash=None, updated_at=func.now())
        .returning(Run.id)
    )
    return len(result.all())
