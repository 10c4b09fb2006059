"""The REST list, the dashboard and bulk actions read a filter alike: each maps its own field
names onto one parser, so the same values select the same runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reprise_server.api.dashboard.runs import list_filter
from reprise_server.api.queries import RunListQuery
from reprise_server.shared.bulk.schemas import BulkFilter
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runs.filters import RunFilter
from reprise_server.shared.runs.states import CURRENT_API_VERSION, RunStatus

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def test_the_same_values_become_the_same_filter_in_all_three() -> None:
    rest = RunListQuery.model_validate({
        "filter[status]": "QUEUED,FAILED", "filter[taskIdentifier]": "b,a", "filter[tag]": "vip",
        "filter[createdAt][from]": "2026-01-01T00:00:00Z", "filter[createdAt][to]": "2026-01-08",
    }).parse(CURRENT_API_VERSION).filter  # fmt: skip
    dashboard = list_filter({
        "status": "QUEUED,FAILED", "task": "b,a", "tag": "vip",
        "from": "2026-01-01T00:00", "to": "2026-01-08T00:00",
    })  # fmt: skip
    bulk = BulkFilter.model_validate({
        "status": ["QUEUED", "FAILED"], "taskIdentifier": ["b", "a"], "tag": "vip",
        "from": "2026-01-01T00:00:00Z", "to": 1767830400000,
    }).to_run_filter(CURRENT_API_VERSION, NOW)  # fmt: skip

    expected = RunFilter(
        statuses=frozenset({RunStatus.QUEUED, RunStatus.RETRYING, RunStatus.FAILED}),
        task_identifiers=("a", "b"), tags=("vip",),
        created_from=datetime(2026, 1, 1, tzinfo=UTC), created_to=datetime(2026, 1, 8, tzinfo=UTC),
    )  # fmt: skip
    assert rest == dashboard == bulk == expected


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda: RunListQuery.model_validate({"filter[status]": "WAITING,NOPE"}).parse(None),
         "filter[status] has an unknown status: NOPE"),
        (lambda: list_filter({"status": "WAITING,NOPE"}), "unknown status: NOPE"),
        (lambda: BulkFilter.model_validate({"status": ["WAITING", "NOPE"]})
         .to_run_filter(None, NOW), "filter.status has an unknown status: NOPE"),
    ],
)
def test_each_words_an_unknown_status_with_its_own_field_name(read: object, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        read()  # type: ignore[operator]

    assert error.value.message == message
