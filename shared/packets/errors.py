from __future__ import annotations

from reprise_server.shared.errors import BadRequest, NotFound, RepriseError


class PacketTooLarge(RepriseError):
    status_code = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"Packet too large: {size} bytes, the maximum is {limit} bytes "
            "(REPRISE_MAX_PACKET_BYTES)"
        )


class InvalidPacketPath(BadRequest):
    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid packet path: {reason}")


class PacketNotFound(NotFound):
    def __init__(self, path: str | None = None) -> None:
        super().__init__(f"Packet not found: {path}" if path else "Packet not found or link expired")
