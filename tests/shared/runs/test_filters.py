"""The one vocabulary a wire filter is read with (:meth:`RunFilter.build`): status words of
either vocabulary, comma lists, dates and periods, each refusal in the adapter's words; and
the runs a filter built so matches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reprise_server.shared.db import transaction
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runs.filters import (
    FilterWording,
    InvalidFilter,
    RunFilter,
    count_runs,
    parse_period,
)
from reprise_server.shared.runs.states import CURRENT_API_VERSION, RunStatus
from tests.support import triggers
from tests.support.fixtures import ProjectKeys

WORDING = FilterWording(
    unknown_status="status? {value}",
    created_from="from?",
    created_to="to?",
    period="period?",
)
NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)


def build(**fields: object) -> RunFilter:
    fields.setdefault("api_version", CURRENT_API_VERSION)
    return RunFilter.build(WORDING, **fields)  # type: ignore[arg-type]


def test_no_values_is_the_filter_that_keeps_every_run() -> None:
    assert build() == RunFilter()
    assert build(statuses="", tags=" , ", task_identifiers=[], batch_id="",
                 created_from="", is_test=None) == RunFilter()  # fmt: skip


def test_a_string_is_a_comma_list_and_a_list_is_its_words_as_given() -> None:
    run_filter = build(tags="vip, beta,,vip", task_identifiers=["b", "a,c", " a "])

    assert run_filter.tags == ("beta", "vip")  # sorted, each once
    assert run_filter.task_identifiers == ("a", "a,c", "b")


@pytest.mark.parametrize(
    ("words", "api_version", "statuses"),
    [
        ("COMPLETED, failed", CURRENT_API_VERSION, {RunStatus.COMPLETED, RunStatus.FAILED}),
        # Grouped words: a run waiting to retry is queued, as the SDK sees it.
        ("QUEUED", CURRENT_API_VERSION, {RunStatus.QUEUED, RunStatus.RETRYING}),
        ("EXECUTING", CURRENT_API_VERSION, {RunStatus.EXECUTING}),
        ("EXECUTING", None, {RunStatus.EXECUTING, RunStatus.DEQUEUED}),
        ("WAITING_FOR_DEPLOY,REATTEMPTING", None, {RunStatus.PENDING_VERSION, RunStatus.RETRYING}),
        (["DELAYED", "DELAYED"], CURRENT_API_VERSION, {RunStatus.DELAYED}),
    ],
)
def test_status_words_of_either_vocabulary_name_internal_states(
    words: object, api_version: str | None, statuses: set[RunStatus]
) -> None:
    assert build(statuses=words, api_version=api_version).statuses == statuses


def test_a_status_word_naming_no_state_reprise_has_is_a_filter_matching_nothing() -> None:
    assert build(statuses="INTERRUPTED").statuses == frozenset()


def test_waiting_and_its_older_name_frozen_are_runs_in_a_durable_wait() -> None:
    assert build(statuses="WAITING").statuses == frozenset({RunStatus.WAITING})
    assert build(statuses="FROZEN,INTERRUPTED").statuses == frozenset({RunStatus.WAITING})


def test_an_unknown_status_is_refused_in_the_adapters_words_naming_the_first_given() -> None:
    with pytest.raises(InvalidFilter) as error:
        build(statuses="COMPLETED,ZZZ,AAA")

    assert error.value.message == "status? ZZZ"
    assert isinstance(error.value, InvalidInput)
    assert error.value.status_code == 400


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("2026-01-01T00:00:00Z", NEW_YEAR),
        ("2026-01-01T01:00:00+01:00", NEW_YEAR),
        ("2026-01-01", NEW_YEAR),
        ("2026-01-01T10:30", NEW_YEAR + timedelta(hours=10, minutes=30)),  # a form's input
        ("1767225600000", NEW_YEAR),  # epoch milliseconds
        (1767225600000, NEW_YEAR),
        (1767225600500.0, NEW_YEAR + timedelta(milliseconds=500)),
    ],
)
def test_dates_are_iso_8601_or_epoch_milliseconds_in_utc(value: object, moment: datetime) -> None:
    run_filter = build(created_from=value, created_to=value)

    assert run_filter.created_from == moment
    assert run_filter.created_to == moment
    assert moment.tzinfo is not None


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "12:00", 1e300, "9" * 40])
def test_a_date_it_cannot_read_is_refused_naming_its_field(value: object) -> None:
    with pytest.raises(InvalidFilter, match=r"^from\?$"):
        build(created_from=value)
    with pytest.raises(InvalidFilter, match=r"^to\?$"):
        build(created_to=value)


def test_flags_and_ids() -> None:
    assert build(is_test="TRUE").is_test is True
    assert build(is_test="no").is_test is False
    assert build(is_test=False).is_test is False
    run_filter = build(batch_id="batch_1", schedule_id="sched_1", bulk_action_id="bulk_1",
                       replays_only=True)  # fmt: skip
    assert (run_filter.batch_id, run_filter.schedule_id, run_filter.bulk_action_id) == (
        "batch_1", "sched_1", "bulk_1")
    assert run_filter.replays_only is True
    assert build(replays_only=None).replays_only is False


def test_a_period_is_a_duration() -> None:
    assert parse_period("1h30m", WORDING) == timedelta(minutes=90)
    assert parse_period("", WORDING) is None
    assert parse_period(None, WORDING) is None
    with pytest.raises(InvalidFilter, match=r"^period\?$"):
        parse_period("a while", WORDING)


def test_grouped_and_empty_status_filters_select_the_runs_they_name(project: ProjectKeys) -> None:
    triggers.in_db(project, publish=False)  # QUEUED
    environment_id = project.environment_ids["dev"]

    def matching(words: str) -> int:
        run_filter = RunFilter.build(WORDING, api_version=CURRENT_API_VERSION, statuses=words)
        with transaction() as session:
            return count_runs(session, environment_id, run_filter)

    assert matching("QUEUED") == 1
    assert matching("COMPLETED,FAILED") == 0
    assert matching("WAITING") == 0  # names no state: matches nothing, not everything
    assert matching("") == 1
