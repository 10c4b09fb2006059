"""A bulk action's selection (its filter, frozen and stored as JSON) reads back as the same
filter, including a status filter that names no state and so matches no run."""

from __future__ import annotations

from datetime import UTC, datetime

from reprise_server.shared.bulk.selection import filter_of, selection_of
from reprise_server.shared.runs.filters import RunFilter
from reprise_server.shared.runs.states import RunStatus


def test_a_filter_reads_back_as_itself() -> None:
    run_filter = RunFilter(
        statuses=frozenset({RunStatus.FAILED, RunStatus.CRASHED}), tags=("a", "b"),
        created_from=datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
        created_to=datetime(2026, 1, 8, tzinfo=UTC), is_test=False, replays_only=True,
        error_fingerprint="0123456789abcdef",
    )  # fmt: skip

    assert filter_of(selection_of(run_filter)) == run_filter
    assert selection_of(run_filter)["errorFingerprint"] == "0123456789abcdef"


def test_an_empty_status_set_is_kept_so_it_still_matches_nothing() -> None:
    matching_nothing = RunFilter(statuses=frozenset(), tags=("a",))

    assert selection_of(matching_nothing)["statuses"] == []
    assert filter_of(selection_of(matching_nothing)).statuses == frozenset()
    assert "statuses" not in selection_of(RunFilter(tags=("a",)))
    assert filter_of(selection_of(RunFilter(tags=("a",)))).statuses is None
