"""The state machine's table and the public status vocabularies. That every named move of
the lifecycle is an edge of the table: ``test_lifecycle.py``."""

from __future__ import annotations

import pytest

from reprise_server.shared.runs.states import (
    FINAL_STATES,
    TRANSITIONS,
    RunStatus,
    public_status,
    sources_of,
    statuses_for_filter,
)

S = RunStatus


def test_final_states_have_no_way_out() -> None:
    for state in FINAL_STATES:
        assert TRANSITIONS[state] == frozenset()


def test_every_state_has_a_row_in_the_table() -> None:
    assert set(TRANSITIONS) == set(RunStatus)


def test_only_never_dequeued_states_can_expire() -> None:
    assert sources_of(S.EXPIRED) == {S.PENDING_VERSION, S.DELAYED, S.QUEUED, S.DEQUEUED}


def test_current_and_legacy_vocabularies() -> None:
    assert public_status(S.PENDING_VERSION, "2025-07-16") == "PENDING_VERSION"
    assert public_status(S.PENDING_VERSION, None) == "WAITING_FOR_DEPLOY"
    assert public_status(S.RETRYING, None) == "REATTEMPTING"
    assert public_status(S.RETRYING, "2025-07-16") == "QUEUED"
    assert public_status(S.DEQUEUED, "2025-07-16") == "DEQUEUED"
    assert public_status(S.DEQUEUED, None) == "EXECUTING"


def test_list_filters_accept_both_vocabularies() -> None:
    assert statuses_for_filter("WAITING_FOR_DEPLOY", None) == {S.PENDING_VERSION}
    assert statuses_for_filter("pending_version", "2025-07-16") == {S.PENDING_VERSION}
    assert statuses_for_filter("REATTEMPTING", None) == {S.RETRYING}
    assert statuses_for_filter("EXECUTING", "2025-07-16") == {S.EXECUTING}
    assert statuses_for_filter("EXECUTING", None) == {S.EXECUTING, S.DEQUEUED}
    with pytest.raises(ValueError, match="unknown status"):
        statuses_for_filter("NOPE", None)
