"""Pure rules of commands: the replay body and its plan, the reschedule body and delay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from reprise_server.shared.commands.errors import InvalidDelay
from reprise_server.shared.commands.replay import KeyPlan, ReplayPlan, changes_of
from reprise_server.shared.commands.reschedule import resolve_new_time
from reprise_server.shared.commands.schemas import ReplayRequest, RescheduleRequest

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_an_empty_replay_body_changes_nothing() -> None:
    assert changes_of(ReplayRequest(), NOW) == ReplayPlan()


def test_a_replay_body_is_resolved_once_into_run_option_changes() -> None:
    body = ReplayRequest.model_validate({
        "tags": "solo", "maxAttempts": 4, "queue": {"name": "q"}, "machine": {"preset": "large-1x"},
        "version": "20261122.1", "ttl": "1m", "delay": 1.5,
    })
    assert changes_of(body, NOW) == ReplayPlan(
        option_changes={"tags": ["solo"], "max_attempts": 4, "queue": "q",
                        "machine": "large-1x", "lock_to_version": "20261122.1"},
        ttl_seconds=60,
        due=NOW + timedelta(seconds=1.5),
    )


def test_a_replay_plan_reads_back_from_its_json() -> None:
    plan = ReplayPlan(
        option_changes={"tags": ["a"], "metadata": {"k": [1]}, "priority": 5},
        ttl_seconds=0, due=NOW + timedelta(seconds=90), payload=None, payload_type="application/json",
        key=KeyPlan("k-1", "ab" * 32, NOW + timedelta(days=30)), checkpoint=2,
    )
    assert ReplayPlan.from_json({"plan": plan.to_json()}, NOW) == plan
    assert ReplayPlan.from_json({"plan": ReplayPlan().to_json()}, NOW) == ReplayPlan()


def test_a_replay_accepted_by_the_previous_code_reads_as_the_same_plan() -> None:
    """Commands left pending across an upgrade stored their overrides keyed as the
    trigger's options, with the delay already a date and the key already hashed."""
    previous = {
        "overrides": {
            "tags": ["solo"], "maxAttempts": 4, "queue": {"name": "q"}, "ttl": "1m",
            "lockToVersion": "20261122.1", "delay": "2026-11-22T12:01:30.000Z",
            "payload": {"x": 2}, "payloadType": "application/json", "idempotencyKey": "k-1",
            "idempotencyKeyHash": "ab" * 32,
            "idempotencyKeyExpiresAt": "2026-12-22T12:00:00.000Z",
        },
        "checkpoint": 3,
        "requestKey": "req-1",
    }
    assert ReplayPlan.from_json(previous, NOW) == ReplayPlan(
        option_changes={"tags": ["solo"], "max_attempts": 4, "queue": "q",
                        "lock_to_version": "20261122.1"},
        ttl_seconds=60, due=NOW + timedelta(seconds=90), payload={"x": 2},
        payload_type="application/json", key=KeyPlan("k-1", "ab" * 32, NOW + timedelta(days=30)),
        checkpoint=3,
    )
    assert ReplayPlan.from_json({}, NOW) == ReplayPlan()


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
