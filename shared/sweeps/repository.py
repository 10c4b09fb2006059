"""The one statement the sweep guard needs."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:key)")


def try_transaction_lock(session: Session, key: int) -> bool:
    """``pg_try_advisory_xact_lock``: never waits; released when the transaction ends."""
    return bool(session.connection().execute(_TRY_LOCK, {"key": key}).scalar_one())
