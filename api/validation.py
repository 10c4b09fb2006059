"""Turning pydantic validation errors into one sentence naming the field."""

from __future__ import annotations

import re

from pydantic import ValidationError

# The location segments pydantic adds for the members of a union (``str``, ``int``,
# ``dict[str,any]``, ``function-before[…]``): they name a type tried, not a field.
_UNION_MEMBER = re.compile(r"str|int|float|bool|none|list|dict|.*\[.*")


def validation_message(exc: ValidationError) -> str:
    """``field: why`` for the first three fields at fault; the alternatives of a union are
    one field's ``why or why``."""
    reasons: dict[str, list[str]] = {}
    for error in exc.errors():
        location = ".".join(
            str(p) for p in error.get("loc", ())
            if p != "body" and not (isinstance(p, str) and _UNION_MEMBER.fullmatch(p))
        )
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        said = reasons.setdefault(location, [])
        if message not in said:
            said.append(message)
    parts = [
        f"{location}: {' or '.join(said)}" if location else " or ".join(said)
        for location, said in list(reasons.items())[:3]
    ]
    return "; ".join(parts) or "Invalid request body"
