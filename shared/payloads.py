"""Decoding the payload string the SDK sends into a stored JSON value."""

from __future__ import annotations

import json
from typing import Any

from reprise_server.shared.errors import BadRequest, InvalidInput

SUPERJSON = "application/super+json"
JSON = "application/json"
TEXT = "text/plain"
# The payload is the path of a packet the SDK uploaded first (shared.packets).
STORE = "application/store"
SUPPORTED_TYPES = (JSON, SUPERJSON, TEXT, STORE)
MAX_DEPTH = 64


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Depth of nested containers, iteratively, stopping once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return deepest


class NulCharacter(BadRequest):
    """Postgres cannot store U+0000 in text or JSONB: refused before anything is written."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} contains a NUL character (U+0000), which cannot be stored")


def _nul_path(value: Any, path: str) -> str | None:
    """Where in ``value`` (a JSON value) a string or key holds U+0000, if anywhere."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return where
        elif isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and "\x00" in key:
                    return where
                stack.append((child, f"{where}.{key}"))
        elif isinstance(node, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node))
    return None


def reject_nul(value: Any, field: str) -> None:
    """Raise :class:`NulCharacter` naming the first place in ``value`` that holds one."""
    where = _nul_path(value, field)
    if where is not None:
        raise NulCharacter(where)


def check_depth(value: Any, field: str = "payload") -> None:
    if _depth(value) > MAX_DEPTH:
        raise InvalidInput(f"{field} is nested deeper than {MAX_DEPTH} levels")


def decode_payload(raw: Any, payload_type: str | None) -> tuple[Any, str]:
    """Return ``(value, type)``. Strings are decoded by type; other JSON values pass as-is."""
    kind = payload_type or JSON
    if kind not in SUPPORTED_TYPES:
        raise InvalidInput(
            f"options.payloadType must be one of {', '.join(SUPPORTED_TYPES)}, got {kind!r}"
        )
    if kind == STORE:
        if not isinstance(raw, str) or not raw:
            raise InvalidInput("payload must be a packet path when payloadType is application/store")
        return raw, kind
    if raw is None:
        return None, kind
    if not isinstance(raw, str) or payload_type is None:
        # Without a declared type (curl, our Python SDK) the payload is a plain JSON value;
        # the official SDK always declares the type of its string-encoded payloads.
        check_depth(raw)
        reject_nul(raw, "payload")
        return raw, JSON
    if kind == TEXT:
        reject_nul(raw, "payload")
        return raw, kind

    try:
        decoded = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        raise InvalidInput(f"payload is not valid {kind}") from None
    if kind == SUPERJSON:
        if not isinstance(decoded, dict) or "json" not in decoded:
            raise InvalidInput("payload is not valid application/super+json")
        decoded = decoded["json"]
    check_depth(decoded)
    reject_nul(decoded, "payload")
    return decoded, kind
