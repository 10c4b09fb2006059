"""``runs.replay`` and ``runs.reschedule`` of the SDK against a live API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reprise.client import Client
from reprise.errors import BadRequestError, NotFoundError
from reprise.models import Run, TriggeredRun
from tests.reprise.helpers import wait_for_run

pytestmark = pytest.mark.e2e


def test_replay_creates_a_new_run_that_executes_as_a_replay(
    client: Client, celery_worker: Any
) -> None:
    original = client.tasks.trigger("test-echo", {"n": 1}, tags=["orig"]).id
    wait_for_run(client, original, "COMPLETED")

    handle = client.runs.replay(original)

    assert isinstance(handle, TriggeredRun)
    assert handle.is_cached is False
    new_id = handle.id
    assert new_id.startswith("run_")
    assert new_id != original
    replayed = wait_for_run(client, new_id, "COMPLETED")
    assert replayed.replayed_from == original
    assert replayed.tags == ["orig"]
    assert replayed.output == {"payload": {"n": 1}, "attempt": 1, "isReplay": True}


def test_replay_with_overrides(client: Client, celery_worker: Any) -> None:
    original = client.tasks.trigger("test-echo", {"n": 1}, tags=["orig"], delay="1h").id

    new_id = client.runs.replay(original, payload={"n": 2}, tags=["again"], metadata={"m": 1}).id

    replayed = wait_for_run(client, new_id, "COMPLETED")
    assert replayed.payload == {"n": 2}
    assert replayed.tags == ["again"]
    assert replayed.metadata == {"m": 1}
    assert replayed.output["payload"] == {"n": 2}


def test_replay_of_an_unknown_run_raises_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError, match="Run not found"):
        client.runs.replay("run_" + "a" * 24)


def test_reschedule_with_a_duration_and_with_a_datetime(client: Client) -> None:
    run_id = client.tasks.trigger("test-echo", delay="1h").id
    before = client.runs.retrieve(run_id).delayed_until
    assert before is not None

    moved = client.runs.reschedule(run_id, delay="2h")

    assert isinstance(moved, Run)
    assert moved.status == "DELAYED"
    assert moved.delayed_until is not None
    assert moved.delayed_until > before
    target = datetime.now(UTC).replace(microsecond=250_000) + timedelta(days=3)
    at_date = client.runs.reschedule(run_id, delay=target)
    assert at_date.delayed_until == target
    assert client.runs.retrieve(run_id).delayed_until == at_date.delayed_until


def test_reschedule_refuses_runs_that_are_not_delayed_and_bad_delays(client: Client) -> None:
    run_id = client.tasks.trigger("test-echo", delay="1h").id

    with pytest.raises(BadRequestError) as bad_delay:
        client.runs.reschedule(run_id, delay="soon")
    assert (bad_delay.value.status, bad_delay.value.message) == (400, "Invalid delay: soon")
    client.runs.cancel(run_id)
    with pytest.raises(BadRequestError) as not_delayed:
        client.runs.reschedule(run_id, delay="2h")
    assert not_delayed.value.message == "Cannot reschedule a run that is not delayed"
