"""Packet rules: presigning, storing, loading, and resolving a run's offloaded payload.

The official SDK offloads a payload of 128 KiB or more (``OFFLOAD_IO_PACKET_LENGTH_LIMIT``
in ``@trigger.dev/core``): ``PUT /api/v2/packets/{filename}`` answers ``{presignedUrl,
storagePath}``, the SDK PUTs the serialized payload there with its type as Content-Type,
then triggers with ``payloadType: "application/store"`` and ``storagePath`` as the payload.
Here ``storagePath`` is the filename itself (paths are per environment), and the presigned
URL is an HMAC-signed URL on the API (``/api/v1/packet-objects/…``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from reprise_server.shared.packets import repository as repo
from reprise_server.shared.packets import store
from reprise_server.shared.packets.errors import InvalidPacketPath, PacketNotFound, PacketTooLarge
from reprise_server.shared.payloads import STORE, decode_payload
from reprise_server.shared.projects.tokens import sign_object, verify_object
from reprise_server.shared.runs.models import Run
from reprise_server.shared.settings import get_settings

MAX_PATH_LENGTH = 1024
OBJECT_ROUTE = "/api/v1/packet-objects"


@dataclass(frozen=True)
class StoredPacket:
    data: bytes
    content_type: str


def check_path(path: str) -> str:
    """A packet path as the SDK names them (``<prefix>/payload.json``): relative, no
    ``..`` segment, no control characters."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidPacketPath(f"must be 1 to {MAX_PATH_LENGTH} characters")
    if path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise InvalidPacketPath(f"{path!r} must be a relative path without empty, . or .. parts")
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise InvalidPacketPath("control characters are not allowed")
    return path


def object_url(base_url: str, method: str, environment_id: str, path: str) -> str:
    """A URL on the API allowing one ``method`` (PUT: upload, GET: download) on one packet
    until ``packet_url_seconds`` from now."""
    expires = int(time.time()) + get_settings().packet_url_seconds
    signature = sign_object(method, environment_id, path, expires)
    # The path is the SDK's (any characters but control ones): percent-encoded in the URL,
    # so a `?`, `#` or `%` in it stays part of the path (the route receives it decoded).
    return (f"{base_url.rstrip('/')}{OBJECT_ROUTE}/{environment_id}/{quote(path, safe='/')}"
            f"?expires={expires}&signature={signature}")


def check_object_url(method: str, environment_id: str, path: str, expires: int,
                     signature: str) -> None:
    if not verify_object(method, environment_id, path, expires, signature):
        raise PacketNotFound()


def check_size(size: int) -> None:
    limit = get_settings().max_packet_bytes
    if size > limit:
        raise PacketTooLarge(size, limit)


def store_packet(session: Session, environment_id: str, path: str, data: bytes,
                 content_type: str | None) -> None:
    """Keep an uploaded packet (its bytes in the configured store, its row in Postgres)."""
    check_size(len(data))
    settings = get_settings()
    values: dict[str, Any] = {
        "environment_id": environment_id,
        "path": path,
        "content_type": (content_type or "application/json").split(";")[0].strip()[:100],
        "size_bytes": len(data),
        "store": settings.packet_store,
        "object_key": None,
        "data": None,
    }
    if settings.packet_store == "s3":
        key = store.object_key(environment_id, path, settings)
        store.put_object(key, data, values["content_type"])
        values["object_key"] = key
    else:
        values["data"] = data
    repo.upsert_packet(session, values)


def load_packet(session: Session, environment_id: str, path: str) -> StoredPacket:
    head = repo.packet_head(session, environment_id, path)
    if head is None:
        raise PacketNotFound(path)
    if head.store == "s3" and head.object_key:
        data = store.get_object(head.object_key)
    else:
        data = repo.packet_data(session, environment_id, path) or b""
    return StoredPacket(data, head.content_type)


def packet_exists(session: Session, environment_id: str, path: str) -> bool:
    return repo.packet_head(session, environment_id, path) is not None


def decoded_packet(packet: StoredPacket) -> Any:
    """The JSON value a packet holds, decoded by its type (superjson, JSON or text)."""
    value, _ = decode_payload(packet.data.decode("utf-8", errors="replace"), packet.content_type)
    return value


def run_payload(session: Session, run: Run) -> Any:
    """The payload a run's task receives: the stored packet's value for an offloaded one."""
    if run.payload_type != STORE or not isinstance(run.payload, str):
        return run.payload
    return decoded_packet(load_packet(session, run.environment_id, run.payload))
