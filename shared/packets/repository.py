"""All SQL of packets."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from reprise_server.shared.packets.models import Packet


def upsert_packet(session: Session, values: dict[str, object]) -> None:
    """Write a packet; a second upload to the same path replaces it (the SDK retries)."""
    statement = insert(Packet).values(**values)
    updated = {k: statement.excluded[k] for k in values if k not in ("environment_id", "path")}
    session.execute(statement.on_conflict_do_update(
        index_elements=[Packet.environment_id, Packet.path], set_=updated,
    ))


def packet_head(session: Session, environment_id: str, path: str) -> Packet | None:
    """The packet's row without its bytes."""
    row = session.execute(
        select(Packet.content_type, Packet.size_bytes, Packet.store, Packet.object_key).where(
            Packet.environment_id == environment_id, Packet.path == path
        )
    ).first()
    if row is None:
        return None
    return Packet(environment_id=environment_id, path=path, content_type=row[0],
                  size_bytes=row[1], store=row[2], object_key=row[3])


def packet_data(session: Session, environment_id: str, path: str) -> bytes | None:
    return session.execute(
        select(Packet.data).where(Packet.environment_id == environment_id, Packet.path == path)
    ).scalar_one_or_none()
