"""Public identifiers: a prefix and 24 unguessable characters of [0-9a-z]."""

from __future__ import annotations

import re
from collections import Counter

from reprise_server.shared.ids import is_run_id, new_command_id, new_run_id


def test_ids_are_24_base36_characters_after_their_prefix_and_never_repeat() -> None:
    ids = [new_run_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"run_[0-9a-z]{24}", i) for i in ids)
    assert all(is_run_id(i) for i in ids[:100])
    assert re.fullmatch(r"cmd_[0-9a-z]{24}", new_command_id())


def test_every_character_is_drawn_evenly_at_every_position() -> None:
    ids = [new_run_id()[4:] for _ in range(36 * 400)]
    for position in (0, 11, 23):
        counts = Counter(i[position] for i in ids)
        assert len(counts) == 36
        # 400 expected per character; a fixed or skewed position would be far off.
        assert min(counts.values()) > 250, counts
        assert max(counts.values()) < 550, counts
