from __future__ import annotations

import json

import pytest

from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.payloads import decode_payload


def test_superjson_is_decoded_to_its_json_value() -> None:
    raw = json.dumps(
        {"json": {"foo": "bar", "when": "2026-01-01T00:00:00.000Z"},
         "meta": {"values": {"when": ["Date"]}}}
    )
    value, kind = decode_payload(raw, "application/super+json")
    assert value == {"foo": "bar", "when": "2026-01-01T00:00:00.000Z"}
    assert kind == "application/super+json"


def test_json_text_is_parsed() -> None:
    assert decode_payload('{"a": [1, 2]}', "application/json") == ({"a": [1, 2]}, "application/json")
    assert decode_payload('"hello"', "application/json") == ("hello", "application/json")


def test_plain_text_is_kept_as_text() -> None:
    assert decode_payload("not json {", "text/plain") == ("not json {", "text/plain")


def test_untyped_payload_is_a_plain_json_value() -> None:
    assert decode_payload({"x": 1}, None) == ({"x": 1}, "application/json")
    assert decode_payload("123", None) == ("123", "application/json")


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("{bad json", "application/json"),
        ('{"no": "json key"}', "application/super+json"),
        ("x", "application/xml"),
    ],
)
def test_malformed_payloads_are_rejected(raw: str, kind: str) -> None:
    with pytest.raises(InvalidInput):
        decode_payload(raw, kind)


def test_deeply_nested_payload_is_rejected() -> None:
    deep: object = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested deeper"):
        decode_payload(deep, None)
