"""An error group someone chose to hide from the Overview page, per environment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class IgnoredErrorGroup(Base):
    """A group (task, error fingerprint) hidden in its environment, whatever the window;
    its error's name and normalised message are kept to list it for unignoring."""

    __tablename__ = "ignored_error_groups"

    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True)
    task_identifier: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    error_name: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    ignored_at: Mapped[datetime] = mapped_column(server_default=func.now())
