"""All SQL for bulk actions and their items."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from reprise_server.shared.bulk.models import BulkAction, BulkActionItem, BulkStatus

_ITEMS = cast(Table, BulkActionItem.__table__)


def insert_bulk_action(session: Session, bulk: BulkAction) -> BulkAction:
    session.add(bulk)
    session.flush()
    return bulk


def get_bulk_action(session: Session, environment_id: str, bulk_id: str) -> BulkAction | None:
    return session.scalars(
        select(BulkAction).where(
            BulkAction.id == bulk_id, BulkAction.environment_id == environment_id
        )
    ).first()


def lock_bulk_action(session: Session, bulk_id: str) -> BulkAction | None:
    """The action's row, locked until the end of the transaction: one batch at a time,
    and an abort waits for the batch in progress."""
    return session.scalars(
        select(BulkAction)
        .where(BulkAction.id == bulk_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def list_bulk_actions(
    session: Session,
    environment_id: str,
    limit: int,
    *,
    kinds: tuple[str, ...] | None = None,
    after: tuple[datetime, str] | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[BulkAction]:
    """Newest first on ``(created_at, id)`` (``ix_bulk_actions_env_created``); ``before``
    walks backwards and returns the page newest first all the same."""
    query = select(BulkAction).where(BulkAction.environment_id == environment_id)
    if kinds is not None:
        query = query.where(BulkAction.kind.in_(kinds))
    if after is not None:
        at, bid = after
        query = query.where(
            or_(BulkAction.created_at < at, and_(BulkAction.created_at == at, BulkAction.id < bid))
        )
    if before is not None:
        at, bid = before
        query = query.where(
            or_(BulkAction.created_at > at, and_(BulkAction.created_at == at, BulkAction.id > bid))
        )
        rows = list(session.scalars(
            query.order_by(BulkAction.created_at.asc(), BulkAction.id.asc()).limit(limit)
        ))
        rows.reverse()
        return rows
    return list(session.scalars(
        query.order_by(BulkAction.created_at.desc(), BulkAction.id.desc()).limit(limit)
    ))


def abort_bulk_action(session: Session, bulk_id: str) -> bool:
    """PENDING -> ABORTED (waits for a batch in progress: it holds the row)."""
    result = session.execute(
        update(BulkAction)
        .where(BulkAction.id == bulk_id, BulkAction.status == BulkStatus.PENDING.value)
        .values(status=BulkStatus.ABORTED.value, updated_at=func.now(), completed_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_batch(
    session: Session,
    bulk_id: str,
    *,
    succeeded: int,
    failed: int,
    cursor: tuple[datetime, str] | None,
    finished: bool,
) -> None:
    """Add a batch's counts and move the cursor past it (the caller holds the row lock)."""
    values: dict[str, Any] = {
        "success_count": BulkAction.success_count + succeeded,
        "failure_count": BulkAction.failure_count + failed,
        "batch_count": BulkAction.batch_count + 1,
        "updated_at": func.now(),
    }
    if cursor is not None:
        values["cursor_created_at"], values["cursor_run_id"] = cursor
    if finished:
        values["status"] = BulkStatus.COMPLETED.value
        values["completed_at"] = func.now()
    session.execute(
        update(BulkAction).where(BulkAction.id == bulk_id).values(**values)
        .execution_options(synchronize_session=False)
    )


def insert_items(session: Session, items: list[dict[str, Any]]) -> None:
    if items:
        session.execute(insert(_ITEMS), items)


def items_of(session: Session, bulk_id: str, limit: int = 100) -> list[BulkActionItem]:
    return list(session.scalars(
        select(BulkActionItem).where(BulkActionItem.bulk_action_id == bulk_id).limit(limit)
    ))
