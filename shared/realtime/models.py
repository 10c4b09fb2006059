"""The api processes following run changes right now (their ``LISTEN`` is open and some
subscription waits on it): the ``runs`` trigger sends ``NOTIFY reprise_runs`` only while
one of them is registered and not expired. Why: docs/architecture.md#realtime."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class RealtimeListener(Base):
    """One listening connection (host, pid and a token of its own), kept alive by its api
    process while it listens; a crashed process's row simply expires."""

    __tablename__ = "realtime_listeners"

    listener: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime]
