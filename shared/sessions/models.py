from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class DashboardSession(Base):
    """A signed-in dashboard: the key it was opened with (revoking the key ends it), the
    environment it shows (switchable within the key's project) and its CSRF token. Only
    the SHA-256 of the cookie's value is stored."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]


class SignInLink(Base):
    """A one-time sign-in link (``reprise dev`` prints one): the hash of its token, the key
    it signs in with, and when it was used (a link works once, before it expires)."""

    __tablename__ = "dashboard_sign_in_links"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
