"""Run metadata operations as the SDK flushes them (the reference: @trigger.dev/core's
applyMetadataOperations)."""

from __future__ import annotations

from typing import Any

import pytest

from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runs.metadata import apply_operations


def apply(current: dict[str, Any] | None, *operations: dict[str, Any]) -> dict[str, Any]:
    return apply_operations(current, list(operations))


def test_set_delete_and_update_on_top_level_keys() -> None:
    assert apply({"a": 1}, {"type": "set", "key": "b", "value": [1]}) == {"a": 1, "b": [1]}
    assert apply({"a": 1, "b": 2}, {"type": "delete", "key": "a"}) == {"b": 2}
    assert apply({"a": 1}, {"type": "delete", "key": "missing"}) == {"a": 1}
    assert apply({"a": 1}, {"type": "update", "value": {"z": 0}}) == {"z": 0}


def test_json_paths_create_what_they_go_through() -> None:
    assert apply(None, {"type": "set", "key": "$.progress.done", "value": 2}) == {
        "progress": {"done": 2}}
    assert apply({"items": [1, 2]}, {"type": "set", "key": "$.items[1]", "value": 9}) == {
        "items": [1, 9]}
    assert apply({"p": {"a": 1, "b": 2}}, {"type": "delete", "key": "$.p.a"}) == {"p": {"b": 2}}
    assert apply({"items": [1]}, {"type": "set", "key": "$.items[1]", "value": 2}) == {
        "items": [1, 2]}  # the next index appends
    assert apply({"items": [1, 2, 3]}, {"type": "delete", "key": "$.items[0]"}) == {
        "items": [2, 3]}


def test_append_remove_and_increment() -> None:
    state = apply(None, {"type": "append", "key": "log", "value": "a"},
                  {"type": "append", "key": "log", "value": {"x": 1}},
                  {"type": "append", "key": "single", "value": 2})
    assert state == {"log": ["a", {"x": 1}], "single": [2]}
    assert apply({"one": 1}, {"type": "append", "key": "one", "value": 2}) == {"one": [1, 2]}
    assert apply(state, {"type": "remove", "key": "log", "value": {"x": 1}})["log"] == ["a"]
    counted = apply({"n": 1}, {"type": "increment", "key": "n", "value": 2},
                    {"type": "increment", "key": "$.deep.m", "value": -1.5})
    assert counted == {"n": 3, "deep": {"m": -1.5}}


def test_the_input_is_not_changed() -> None:
    current = {"log": ["a"]}
    apply(current, {"type": "append", "key": "log", "value": "b"})
    assert current == {"log": ["a"]}


@pytest.mark.parametrize(
    "operation",
    [
        {"type": "remove", "key": "n", "value": 1},
        {"type": "set", "key": "$.__proto__.x", "value": 1},
        {"type": "set", "key": "$.", "value": 1},
        {"type": "set", "key": "$.n.x", "value": 1},
        # An index past the end would open a gap (and, huge, allocate a huge list).
        {"type": "set", "key": "$.items[99999999999]", "value": 1},
        {"type": "delete", "key": "$.n[0]"},
    ],
)
def test_operations_that_cannot_apply_are_refused(operation: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        apply({"n": 1}, operation)
