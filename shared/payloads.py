"""What JSON the API stores: reading a request body (:func:`read_json`, refusing values
JSON or Postgres cannot carry and nesting past :data:`MAX_DEPTH`), and decoding the
payload string the SDK sends into a stored JSON value."""

from __future__ import annotations

import json
import math
import re
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


class UnstorableValue(BadRequest):
    """A value JSON or Postgres cannot carry: U+0000 or a lone surrogate in text, NaN or
    ±Infinity (a number that overflows reads as one) in JSON. Refused before anything is
    written, naming where it is; Postgres would otherwise refuse the write (a 500)."""


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (U+0000), which cannot be stored"
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        return (f"contains a lone surrogate (U+{ord(surrogate.group()):04X}), "
                "which cannot be stored")
    return None


def _number_problem(number: float) -> str:
    word = "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"
    return f"is {word}, which JSON cannot carry"


def unstorable(value: Any, path: str) -> str | None:
    """The first place in ``value`` (a JSON value, in document order) that JSON or Postgres
    cannot carry, as a sentence naming it (``payload.a[1] is NaN, …``), or None. A bad key
    names the object that holds it."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        problem = None
        if isinstance(node, str):
            problem = _text_problem(node)
        elif isinstance(node, float) and not math.isfinite(node):
            problem = _number_problem(node)
        elif isinstance(node, dict):
            for key in node:
                problem = _text_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    break
            children = [(child, f"{where}.{key}" if where else str(key))
                        for key, child in node.items()]
            stack.extend(reversed(children))
        elif isinstance(node, list | tuple):
            stack.extend(reversed([(child, f"{where}[{i}]") for i, child in enumerate(node)]))
        if problem is not None:
            return f"{where or 'the request body'} {problem}"
    return None


def reject_unstorable(value: Any, field: str) -> None:
    """Raise :class:`UnstorableValue` naming the first place in ``value`` that holds a
    value JSON or Postgres cannot carry."""
    problem = unstorable(value, field)
    if problem is not None:
        raise UnstorableValue(problem)


def check_depth(value: Any, field: str = "payload") -> None:
    if _depth(value) > MAX_DEPTH:
        raise InvalidInput(f"{field} is nested deeper than {MAX_DEPTH} levels")


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:]')


def _too_deep_field(raw: bytes) -> str | None:
    """The top-level field of the JSON object ``raw`` under which nesting first goes past
    :data:`MAX_DEPTH` (None if the root is not an object): a scan of the text, for a body
    too deep for ``json.loads`` to read at all."""
    depth, key, last = 0, None, b""
    for token in _TOKENS.finditer(raw):
        text = token.group()
        if text in (b"{", b"["):
            if depth == 0 and text == b"[":
                return None
            depth += 1
            if depth > MAX_DEPTH + 1:
                break
        elif text in (b"}", b"]"):
            depth -= 1
        elif text == b":":
            if depth == 1:
                key = last
        else:
            last = text
    try:
        return str(json.loads(key)) if key else None
    except ValueError:
        return None


class NotJson(InvalidInput):
    """The request body is not JSON at all."""


def read_json(raw: bytes) -> Any:
    """A request body's JSON value, refused (400 naming where) when JSON or Postgres cannot
    carry it, or when a top-level field of an object nests deeper than :data:`MAX_DEPTH`
    levels (whatever the depth: ``json.loads`` cannot read past about a thousand)."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotJson(f"not JSON: {exc}") from None
    except RecursionError:
        field = _too_deep_field(raw)
        where = field if field is not None else "the request body"
        raise InvalidInput(f"{where} is nested deeper than {MAX_DEPTH} levels") from None
    if isinstance(value, dict):
        for field, child in value.items():
            check_depth(child, field)
    elif _depth(value) > MAX_DEPTH:
        raise InvalidInput(f"the request body is nested deeper than {MAX_DEPTH} levels")
    reject_unstorable(value, "")
    return value


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
        reject_unstorable(raw, "payload")
        return raw, JSON
    if kind == TEXT:
        reject_unstorable(raw, "payload")
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
    reject_unstorable(decoded, "payload")
    return decoded, kind
