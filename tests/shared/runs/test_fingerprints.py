"""The fingerprint of an error message: its normalisation rules, and the same result from
Python and from Postgres (the runs filter `error` and the grouping run in SQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import cast, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from reprise_server.shared.db import transaction
from reprise_server.shared.runs.fingerprints import (
    MESSAGE_CHARS,
    fingerprint,
    fingerprint_sql,
    normalise,
    normalised_sql,
)

CASES = [
    ("Timeout after 30s for user 123 'bob'", "Timeout after <n>s for user <n> '<str>'"),
    ("Timeout after 45s for user 9 'al'", "Timeout after <n>s for user <n> '<str>'"),
    ('no such key "order:17"', 'no such key "<str>"'),
    ("see `cfg.yaml`", "see `<str>`"),
    ("can't reach the db", "can't reach the db"),  # an apostrophe inside a word stays
    ("job 550e8400-e29b-41d4-a716-446655440000 lost", "job <uuid> lost"),
    ("job 550E8400-E29B-41D4-A716-446655440000 lost", "job <uuid> lost"),
    ("bad pointer 0xDEADbeef", "bad pointer <hex>"),
    ("run run_cm3x9a2bq failed", "run <id> failed"),
    ("user run_abc100000x9 and run_abc5x9", "user <id> and <id>"),
    ("object 5f2b8c1d9e4a missing", "object <id> missing"),
    ("order order-2024-xk9 refused", "order <id> refused"),
    ("took 3.25 s, limit 2", "took <n> s, limit <n>"),
    ("user123 and sha256", "user<n> and sha<n>"),  # short tokens keep their letters
    ("deadline exceeded", "deadline exceeded"),  # words without digits stay
    ("a  b\n\tc", "a b c"),
    ("one\ntwo three\r\n four\t5", "one two three four <n>"),
    ("", ""),
]


@pytest.mark.parametrize(("message", "expected"), CASES)
def test_normalise(message: str, expected: str) -> None:
    assert normalise(message) == expected


def test_messages_differing_only_in_values_share_a_fingerprint() -> None:
    first = fingerprint("TimeoutError", "Timeout after 30s for user 123 'bob'")
    assert first == fingerprint("TimeoutError", "Timeout after 45s for user 9 'al'")
    assert len(first) == 16
    assert int(first, 16) >= 0
    # Another error type, or another message, is another group.
    assert first != fingerprint("ValueError", "Timeout after 30s for user 123 'bob'")
    assert first != fingerprint("TimeoutError", "Timeout after 30s for group 1 'x'")
    assert fingerprint(None, None) == fingerprint("", "")


def test_only_the_start_of_a_long_message_counts() -> None:
    start = "x" * MESSAGE_CHARS
    assert normalise(start + "tail one") == normalise(start + "tail two") == start


@pytest.mark.parametrize(("message", "expected"), CASES)
def test_postgres_normalises_and_fingerprints_as_python(message: str, expected: str) -> None:
    error = cast(literal(f'{{"name": "TimeoutError", "message": {_json(message)}}}'), JSONB)
    with transaction() as session:
        normalised, fp = session.execute(
            select(normalised_sql(error), fingerprint_sql(error))).one()
    assert normalised == expected
    assert fp == fingerprint("TimeoutError", message)


def _json(text: str) -> str:
    import json

    return json.dumps(text)
