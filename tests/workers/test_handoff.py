"""The hand-off's edges, in this process (the test plays the pool process, against real
Postgres and Redis): whatever it was handed and does not execute is published."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from reprise.registry import REGISTRY
from reprise_server.shared import broker, metrics
from reprise_server.shared.flow import admission
from reprise_server.shared.settings import reset_settings_cache
from reprise_server.workers import execution, handoff
from tests.support import flow
from tests.support.fixtures import ProjectKeys

VERSION = "20261206.handoff"
QUICK = {"seconds": 0}


def published() -> float:
    return float(metrics.HANDOFFS.labels(outcome="published")._value.get())


def a_task(queue: str) -> Any:
    """What ``reprise.execute_run`` passes the hand-off: its app and its request."""
    return SimpleNamespace(app=broker.celery_app(), request=SimpleNamespace(
        id="task-1", root_id=None, hostname="test@host", delivery_info={"routing_key": queue},
    ))


def first_executed(project: ProjectKeys, runs: int) -> tuple[list[str], Any, Any]:
    """``runs`` runs under a limit of one: the first executed with a taker, which is
    handed the second (admitted, no message)."""
    ids = flow.trigger(project, "flow-one", runs, payload=QUICK)
    flow.take_messages(ids)
    task = a_task(broker.execution_queue(None))
    taker = handoff.taker_for(task.request)
    assert taker is not None
    assert execution.execute_run(ids[0], REGISTRY, "w", VERSION, taker).status == "COMPLETED"
    assert taker.taken == (ids[1], None)
    assert flow.messages(ids) == []
    return ids, task, taker


@pytest.fixture
def handed(project: ProjectKeys, own_queues: str) -> Iterator[tuple[list[str], Any, Any]]:
    ids, task, taker = first_executed(project, 2)
    yield ids, task, taker
    flow.take_messages(ids)


def test_a_handed_run_whose_claim_fails_is_published(
    handed: tuple[list[str], Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, task, taker = handed
    before = published()

    def database_down(*_: Any, **__: Any) -> Any:
        raise OperationalError("UPDATE runs", {}, Exception("connection refused"))

    monkeypatch.setattr(execution, "execute_run", database_down)
    handoff.execute_taken(task, taker)
    assert taker.taken is None
    assert flow.messages(ids) == [ids[1]]  # back in its queue, as a kept message would be
    assert flow.admission_of([ids[1]])[ids[1]][0] == "QUEUED"
    assert published() == before + 1


def test_a_stopping_worker_publishes_what_it_was_handed(
    handed: tuple[list[str], Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, task, taker = handed
    monkeypatch.setattr(handoff._STOPPING, "value", True)
    handoff.execute_taken(task, taker)
    assert flow.messages(ids) == [ids[1]]
    assert flow.admission_of([ids[1]])[ids[1]][0] == "QUEUED"  # not executed here
    # Nor does a stopping worker take anything more.
    assert handoff.taker_for(task.request) is None


def test_a_handed_run_is_executed_and_hands_over_the_next(
    project: ProjectKeys, own_queues: str
) -> None:
    ids, task, taker = first_executed(project, 3)
    handoff.execute_taken(task, taker)
    assert {status for status, _ in flow.admission_of(ids).values()} == {"COMPLETED"}
    assert flow.messages(ids) == []
    assert flow.state(flow.limit_id(project, "task/flow-one")) == flow.LimitState(
        0, 0, 0, {"": (0, 0)})


def test_hand_off_is_off_at_zero_seconds_and_without_a_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = broker.execution_queue(None)
    assert handoff.taker_for(a_task("").request) is None
    monkeypatch.setenv("REPRISE_WORKER_HANDOFF_SECONDS", "0")
    reset_settings_cache()
    try:
        assert handoff.taker_for(a_task(queue).request) is None
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert isinstance(handoff.taker_for(a_task(queue).request), admission.Taker)
