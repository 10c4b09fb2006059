"""All SQL for batches and their items."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from reprise_server.shared.batches.models import Batch, BatchItem
from reprise_server.shared.idempotency import KeyTaken
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus

_BATCHES = cast(Table, Batch.__table__)


def insert_batch(session: Session, batch: Batch) -> Batch:
    """Insert ``batch``; raises KeyTaken (nothing written) if one of its keys is taken."""
    values = {c.key: getattr(batch, c.key) for c in _BATCHES.columns if c.key in batch.__dict__}
    inserted = session.execute(
        pg_insert(_BATCHES).values(values).on_conflict_do_nothing().returning(_BATCHES.c.id)
    ).first()
    if inserted is None:
        raise KeyTaken(batch.id)
    return batch


def find_by_idempotency_key(session: Session, environment_id: str, key_hash: str) -> Batch | None:
    return session.scalars(
        select(Batch).where(
            Batch.environment_id == environment_id, Batch.idempotency_key_hash == key_hash
        )
    ).first()


def find_by_request_key(session: Session, environment_id: str, request_key: str) -> Batch | None:
    return session.scalars(
        select(Batch).where(
            Batch.environment_id == environment_id, Batch.request_idempotency_key == request_key
        )
    ).first()


def release_request_key(session: Session, batch_id: str) -> None:
    session.execute(update(Batch).where(Batch.id == batch_id).values(request_idempotency_key=None))


def get_batch(
    session: Session, environment_id: str, batch_id: str, *, lock: bool = False
) -> Batch | None:
    query = select(Batch).where(Batch.id == batch_id, Batch.environment_id == environment_id)
    if lock:  # one item stream of a batch at a time: a retried stream waits, then dedups
        query = query.with_for_update()
    return session.scalars(query).first()


def item_indexes(session: Session, batch_id: str) -> set[int]:
    return set(session.scalars(select(BatchItem.index).where(BatchItem.batch_id == batch_id)))


def insert_items(session: Session, items: Collection[dict[str, Any]]) -> None:
    if items:
        session.execute(pg_insert(BatchItem).values(list(items)).on_conflict_do_nothing())


def seal(session: Session, batch_id: str) -> None:
    session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.sealed_at.is_(None))
        .values(sealed_at=func.now(), updated_at=func.now())
    )


def items_with_runs(
    session: Session, batch_id: str
) -> list[tuple[BatchItem, RunStatus | None]]:
    """The batch's items in index order, each with its run's status (None: no run)."""
    rows = session.execute(
        select(BatchItem, Run.status)
        .outerjoin(Run, Run.id == BatchItem.run_id)
        .where(BatchItem.batch_id == batch_id)
        .order_by(BatchItem.index)
    ).all()
    return [(item, status) for item, status in rows]
