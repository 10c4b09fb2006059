"""The fingerprint of a failed run's error: what groups failures that are the same bug.

The message is cut to its first :data:`MESSAGE_CHARS` characters and normalised by the
ordered :data:`RULES` (quoted values, uuids, hex, ids, numbers, whitespace); the
fingerprint is the first 16 hex digits of the MD5 of the error's name, a newline and the
normalised message. ``Timeout after 30s for user 123 'bob'`` and ``Timeout after 45s for
user 9 'al'`` both become ``Timeout after <n>s for user <n> '<str>'``.

The rules are written once and applied twice, identically: by :func:`normalise` in Python
(tests, the page) and by :func:`normalised_sql` in Postgres (grouping, and the runs filter
``error``, so a group's link and its bulk replay select exactly the runs counted). Each
pattern uses only syntax Python's ``re`` and Postgres's regular expressions read the same
way: bracket classes, ``{m,}``, and look-around instead of word boundaries (``\\b`` is a
backspace in Postgres).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sqlalchemy import func, literal
from sqlalchemy.sql.elements import ColumnElement

MESSAGE_CHARS = 1000
FINGERPRINT_CHARS = 16

_TOKEN = "A-Za-z0-9_-"
# (pattern, replacement), applied in this order.
RULES: tuple[tuple[str, str], ...] = (
    # Quoted values, when the quote opens a value (not an apostrophe inside a word).
    ("(?<![A-Za-z0-9])'[^']*'", "'<str>'"),
    ('(?<![A-Za-z0-9])"[^"]*"', '"<str>"'),
    ("(?<![A-Za-z0-9])`[^`]*`", "`<str>`"),
    # UUIDs, then 0x-prefixed hex (starting a token: run_abc100x9 is an id).
    ("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    (f"(?<![{_TOKEN}])0[xX][0-9a-fA-F]+", "<hex>"),
    # Ids: a token of 8 or more letters, digits, '_' or '-' holding a digit and a letter
    # (run_cm3x9a2b, 5f2b8c1d9e, order-2024-xk9).
    ((f"(?<![{_TOKEN}])(?=[{_TOKEN}]*[0-9])(?=[{_TOKEN}]*[A-Za-z])[{_TOKEN}]{{8,}}"
     f"(?![{_TOKEN}])"), "<id>"),
    # Numbers, decimals included.
    ("[0-9]+([.][0-9]+)?", "<n>"),
    # Runs of spaces, tabs and newlines as one space (a lone space is left alone: matching
    # every space made this rule one of the slowest in Postgres).
    ("[ \t\r\n]{2,}|[\t\r\n]", " "),
)
_COMPILED = tuple((re.compile(pattern), replacement) for pattern, replacement in RULES)


def normalise(message: str | None) -> str:
    """The message with its variable parts replaced (see :data:`RULES`)."""
    text = (message or "")[:MESSAGE_CHARS]
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text


def fingerprint(name: str | None, message: str | None) -> str:
    """16 hex digits naming an error's name and normalised message."""
    digest = hashlib.md5(f"{name or ''}\n{normalise(message)}".encode(), usedforsecurity=False)
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def message_sql(error: Any) -> ColumnElement[str]:
    """The part of a JSONB error column's ``message`` the fingerprint reads."""
    return func.left(func.coalesce(error["message"].astext, ""), MESSAGE_CHARS)


def normalised_sql(error: Any) -> ColumnElement[str]:
    """:func:`normalise` in SQL, of a JSONB error column's ``message``."""
    return normalised_text_sql(message_sql(error))


def normalised_text_sql(message: ColumnElement[str]) -> ColumnElement[str]:
    """:func:`normalise` in SQL, of a message already cut by :func:`message_sql`."""
    text = message
    for pattern, replacement in RULES:
        text = func.regexp_replace(text, literal(pattern), literal(replacement), literal("g"))
    return text


def name_sql(error: Any) -> ColumnElement[str]:
    return func.coalesce(error["name"].astext, "")


def fingerprint_of(name: ColumnElement[str], normalised: ColumnElement[str]
                   ) -> ColumnElement[str]:
    """The fingerprint in SQL from the name and the normalised message (as computed by
    :func:`name_sql` and :func:`normalised_sql`, perhaps in a subquery)."""
    digest: ColumnElement[str] = func.md5(name + literal("\n") + normalised)
    return func.left(digest, FINGERPRINT_CHARS)


def fingerprint_sql(error: Any) -> ColumnElement[str]:
    """:func:`fingerprint` in SQL, of a JSONB error column."""
    return fingerprint_of(name_sql(error), normalised_sql(error))
