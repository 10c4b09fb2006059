from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from reprise_server.shared.db import Base


class Packet(Base):
    """One uploaded packet. The row is the index of every packet whatever its store: the
    bytes are in ``data`` (store ``postgres``) or in the bucket under ``object_key``
    (store ``s3``), so changing ``REPRISE_PACKET_STORE`` never loses older packets."""

    __tablename__ = "packets"

    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True
    )
    # The SDK's filename, which it sends back as the payload of an application/store run.
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    store: Mapped[str] = mapped_column(String(16))
    object_key: Mapped[str | None] = mapped_column(String(1200))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
