"""Pure rules of commands: the replay body, the reschedule body and delay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from reprise_server.shared.commands.errors import InvalidDelay
from reprise_server.shared.commands.reschedule import resolve_new_time
from reprise_server.shared.commands.schemas import ReplayRequest, RescheduleRequest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_an_empty_replay_body_overrides_nothing() -> None:
    assert ReplayRequest().overrides() == {}


def test_replay_overrides_use_trigger_option_names() -> None:
    body = ReplayRequest.model_validate(
        {"payload": None, "tags": "solo", "maxAttempts": 4, "queue": {"name": "q"}, "ttl": 60}
    )
    assert body.overrides() == {
        "payload": None, "tags": ["solo"], "maxAttempts": 4, "queue": {"name": "q"}, "ttl": 60,
    }


@pytest.mark.parametrize(
    "body",
    [{"tags": ["x"] * 11}, {"tags": ["x" * 129]}, {"maxAttempts": 0}, {"priority": -1},
     {"delay": True}, {"metadata": [1]}],
)
def test_replay_body_of_the_wrong_shape_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ReplayRequest.model_validate(body)


@pytest.mark.parametrize(
    "body", [None, [], "1h", {}, {"delay": 5}, {"delay": 5.0}, {"delay": True}, {"delay": None}]
)
def test_reschedule_body_needs_a_string_delay(body: Any) -> None:
    with pytest.raises(ValidationError):
        RescheduleRequest.model_validate(body)


def test_a_reschedule_body_keeps_the_delay_as_sent() -> None:
    assert RescheduleRequest.model_validate({"delay": "1h", "extra": 1}).delay == "1h"


@pytest.mark.parametrize(
    ("delay", "due"),
    [("1h30m", NOW + timedelta(minutes=90)), ("1hr", NOW + timedelta(hours=1)),
     ("2030-01-01T00:00:00.000Z", datetime(2030, 1, 1, tzinfo=UTC))],
)
def test_reschedule_delay_is_a_duration_or_a_date(delay: str, due: datetime) -> None:
    assert resolve_new_time(delay, NOW) == due


@pytest.mark.parametrize("delay", ["", "soon", "0s", "2026-11-22T11:59:59Z", "1x"])
def test_reschedule_delay_must_be_in_the_future(delay: str) -> None:
    with pytest.raises(InvalidDelay) as error:
        resolve_new_time(delay, NOW)
    assert error.value.message == f"Invalid delay: {delay}"
