"""Run metadata operations, as the official SDK flushes them (``PUT
/api/v1/runs/{id}/metadata``: ``metadata`` replaces, ``operations`` change; the SDK's
``applyMetadataOperations`` in ``@trigger.dev/core`` is the reference).

A key starting ``$.`` is a JSON path (``$.progress.done``, ``$.items[0]``); any other key is
a top-level key. Operations that cannot apply (``remove`` from something that is not a
list, a path through a scalar) are refused with 400 naming them rather than dropped.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from reprise_server.shared.errors import InvalidInput, RepriseError

_SEGMENT = re.compile(r"\[(\d+)\]|((?:[^.\\\[\]]|\\.)+)")
DANGEROUS = {"__proto__", "constructor", "prototype"}
# Trigger.dev's limit on a run's metadata, on every route that sets it.
MAX_METADATA_BYTES = 256 * 1024


class MetadataTooLarge(RepriseError):
    status_code = 413

    def __init__(self) -> None:
        super().__init__(f"Metadata exceeds maximum size of {MAX_METADATA_BYTES} bytes")


def check_metadata_size(metadata: Any) -> None:
    """413 when ``metadata`` (compact JSON) is over :data:`MAX_METADATA_BYTES`: the same
    limit on a trigger, a batch item, a replay and a flush."""
    if metadata is not None and len(json.dumps(metadata, separators=(",", ":"))) > MAX_METADATA_BYTES:
        raise MetadataTooLarge()


def _path(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for index, name in _SEGMENT.findall(key[2:]):
        parts.append(int(index) if index else name.replace("\\.", "."))
    if not parts or any(part in DANGEROUS for part in parts):
        raise InvalidInput(f"metadata key {key!r} must name a safe segment below $")
    return parts


def _get(root: Any, parts: list[str | int]) -> Any:
    node = root
    for part in parts:
        found = (isinstance(part, int) and isinstance(node, list) and part < len(node)) or (
            isinstance(part, str) and isinstance(node, dict) and part in node)
        if not found:
            return None
        node = node[part]
    return node


def _descend_into(node: Any, part: str | int, following: str | int | None, key: str) -> None:
    """Make ``node[part]`` a container the path can go through: created when missing, a
    scalar in the way is refused (never silently replaced)."""
    child = node[part] if isinstance(part, int) else node.get(part)
    if child is None:
        node[part] = [] if isinstance(following, int) else {}
    elif not isinstance(child, dict | list):
        raise InvalidInput(f"metadata key {key!r} goes through a value that is not an object")


def _set(root: dict[str, Any], parts: list[str | int], value: Any, key: str) -> None:
    node: Any = root
    for part, following in zip(parts, [*parts[1:], None], strict=True):
        last = following is None
        if isinstance(part, int):
            if not isinstance(node, list):
                raise InvalidInput(f"metadata key {key!r} indexes something that is not a list")
            if part > len(node):
                # An index may replace an item or add the next one, never open a gap (a
                # huge index would otherwise allocate a huge list before any size check).
                raise InvalidInput(
                    f"metadata key {key!r} indexes past the end of a list of {len(node)}"
                )
            if part == len(node):
                node.append(None)
            if last:
                node[part] = value
            else:
                _descend_into(node, part, following, key)
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise InvalidInput(f"metadata key {key!r} goes through a value that is not an object")
            if last:
                node[part] = value
            else:
                _descend_into(node, part, following, key)
            node = node[part]


def _read(metadata: dict[str, Any], key: str) -> Any:
    return _get(metadata, _path(key)) if key.startswith("$.") else metadata.get(key)


def _write(metadata: dict[str, Any], key: str, value: Any) -> None:
    if key.startswith("$."):
        _set(metadata, _path(key), value, key)
    else:
        if key == "__proto__":
            raise InvalidInput("metadata key '__proto__' is not allowed")
        metadata[key] = value


def apply_operations(current: dict[str, Any] | None,
                     operations: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The metadata after ``operations`` (validated shapes: ``shared.runs.schemas``)."""
    metadata: dict[str, Any] = copy.deepcopy(current or {})
    for operation in operations:
        kind, key, value = operation["type"], operation.get("key", ""), operation.get("value")
        if kind == "update":
            metadata = copy.deepcopy(value if isinstance(value, dict) else {})
        elif kind == "set":
            _write(metadata, key, value)
        elif kind == "delete":
            if key.startswith("$."):
                parts = _path(key)
                parent = _get(metadata, parts[:-1]) if len(parts) > 1 else metadata
                last = parts[-1]
                if isinstance(parent, dict):
                    parent.pop(str(last), None)
                elif isinstance(parent, list) and isinstance(last, int):
                    if last < len(parent):
                        del parent[last]
                elif parent is not None:
                    raise InvalidInput(f"metadata key {key!r} deletes from a value that is "
                                       "neither an object nor a list")
            else:
                metadata.pop(key, None)
        elif kind == "append":
            existing = _read(metadata, key)
            if existing is None:
                _write(metadata, key, [value])
            elif isinstance(existing, list):
                _write(metadata, key, [*existing, value])
            else:
                _write(metadata, key, [existing, value])
        elif kind == "remove":
            existing = _read(metadata, key)
            if not isinstance(existing, list):
                raise InvalidInput(f"metadata operation remove: {key!r} is not a list")
            _write(metadata, key, [item for item in existing if item != value])
        elif kind == "increment":
            existing = _read(metadata, key)
            base = existing if isinstance(existing, int | float) and not isinstance(
                existing, bool) else 0
            _write(metadata, key, base + (value or 0))
    return metadata
