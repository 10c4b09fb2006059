"""Parsing the list's query syntax (``filter[...]``, ``page[...]``) into a typed query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reprise_server.api.queries import RunListQuery, refuse_unknown_parameters
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runs.filters import RunFilter
from reprise_server.shared.runs.listing import PageRequest, RunQuery
from reprise_server.shared.runs.states import RunStatus
from tests.support.fixtures import ProjectKeys

SDK = "2025-07-16"
RUN = "run_" + "a" * 24


def parse(params: dict[str, str], api_version: str | None = SDK) -> RunQuery:
    return RunListQuery.model_validate(params).parse(api_version)


def test_no_parameters_is_every_run_in_pages_of_25() -> None:
    assert parse({}) == RunQuery(RunFilter(), PageRequest(size=25))


def test_filters_and_pages_become_typed_values() -> None:
    query = parse({
        "filter[status]": "COMPLETED, FAILED", "filter[taskIdentifier]": "a,b",
        "filter[tag]": "vip", "filter[version]": "20261122.1",
        "filter[createdAt][from]": "2026-01-01T00:00:00Z", "filter[createdAt][to]": "1767225600000",
        "filter[isTest]": "TRUE", "filter[notReplayed]": "true",
        "page[size]": "10", "page[after]": RUN,
    })  # fmt: skip

    assert query.filter == RunFilter(
        statuses=frozenset({RunStatus.COMPLETED, RunStatus.FAILED}),
        task_identifiers=("a", "b"), tags=("vip",), versions=("20261122.1",),
        created_from=datetime(2026, 1, 1, tzinfo=UTC),
        created_to=datetime(2026, 1, 1, tzinfo=UTC),
        is_test=True, not_replayed=True,
    )  # fmt: skip
    assert query.page == PageRequest(size=10, after=RUN)
    assert query.created_within is None


def test_status_filters_accept_both_vocabularies() -> None:
    legacy = parse({"filter[status]": "WAITING_FOR_DEPLOY,REATTEMPTING"}, api_version=None)
    assert legacy.filter.statuses == {RunStatus.PENDING_VERSION, RunStatus.RETRYING}
    assert parse({"filter[status]": "EXECUTING"}).filter.statuses == {RunStatus.EXECUTING}
    assert parse({"filter[status]": "EXECUTING"}, api_version=None).filter.statuses == {
        RunStatus.EXECUTING, RunStatus.DEQUEUED}


def test_a_period_counts_back_from_the_database_clock() -> None:
    assert parse({"filter[createdAt][period]": "1h30m"}).created_within == timedelta(minutes=90)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"filter[status]": "COMPLETED,BOGUS"}, "filter[status] has an unknown status: BOGUS"),
        ({"filter[createdAt][from]": "yesterday"},
         "filter[createdAt][from] must be an ISO-8601 date"),
        ({"filter[createdAt][to]": "2026-13-01"}, "filter[createdAt][to] must be an ISO-8601 date"),
        ({"filter[createdAt][period]": "a while"},
         "filter[createdAt][period] must be a duration such as 1d"),
        ({"filter[notReplayed]": "maybe"}, "filter[notReplayed] must be true or false"),
        ({"page[size]": "0"}, "page[size] must be a number from 1 to 100"),
        ({"page[size]": "101"}, "page[size] must be a number from 1 to 100"),
        ({"page[size]": "ten"}, "page[size] must be a number from 1 to 100"),
        ({"page[after]": "nope"}, "page cursors are run ids"),
        ({"page[before]": "run_x"}, "page cursors are run ids"),
    ],
)
def test_values_it_cannot_use_are_400_naming_the_parameter(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInput) as error:
        parse(params)
    assert (error.value.status_code, error.value.message) == (400, message)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("filter[machine]", "filter[machine] cannot be applied"),
        ("filter[region]", "filter[region] cannot be applied"),
        ("filter[colour]", "filter[colour] is not a run-list parameter Reprise knows"),
        ("page[number]", "page[number] is not a run-list parameter Reprise knows"),
    ],
)
def test_a_filter_reprise_cannot_apply_is_refused_naming_it(name: str, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        refuse_unknown_parameters(["filter[status]", name])
    assert error.value.status_code == 400
    assert error.value.message.startswith(message)


def test_a_list_with_a_refused_filter_is_400_never_every_run(
    api: Any, project: ProjectKeys
) -> None:
    response = api.get("/api/v1/runs?filter%5Bmachine%5D=large-1x", headers=project.headers())

    assert response.status_code == 400
    assert "filter[machine]" in response.json()["error"]
    assert "data" not in response.json()
