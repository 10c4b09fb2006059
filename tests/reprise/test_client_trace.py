"""``runs.trace`` of the SDK against a live API: the span tree, typed."""

from __future__ import annotations

from typing import Any

import pytest

from reprise.client import Client
from reprise.errors import NotFoundError
from reprise.models import RunTrace
from tests.reprise.helpers import wait_for_run
from tests.support.runlogs import add_line

pytestmark = pytest.mark.e2e


def test_trace_of_a_run_retried_twice(client: Client, celery_worker: Any) -> None:
    run_id = client.tasks.trigger("trace-retried", {}).id
    wait_for_run(client, run_id, "COMPLETED")
    add_line(run_id, "second try", attempt=2, level="ERROR", exception="Traceback\nboom")

    trace = client.runs.trace(run_id)

    assert isinstance(trace, RunTrace)
    assert trace.trace_id == run_id
    root = trace.root_span
    assert (root.kind, root.data.message, root.data.task_slug) == ("run", "trace-retried",
                                                                   "trace-retried")
    assert [s.kind for s in root.children] == [
        "queue", "attempt", "backoff", "attempt", "backoff", "attempt"]
    assert all(s.duration_ms > 0 for s in root.children if s.kind == "backoff")
    second = root.children[3]
    assert second.data.is_error
    [event] = second.data.events
    assert (event.name, event.properties["message"], event.properties["exception"]) == (
        "log", "second try", "Traceback\nboom")
    assert next(s.id for s in root.walk()) == run_id
    assert root.data.start_time.tzinfo is not None


def test_trace_of_a_parent_links_its_child(client: Client, celery_worker: Any) -> None:
    parent = client.tasks.trigger("trace-parent", {}).id
    wait_for_run(client, parent, "COMPLETED")

    attempt = client.runs.trace(parent).root_span.children[1]

    checkpoint, child = attempt.children
    assert (checkpoint.kind, checkpoint.duration_ms) == ("checkpoint", 0)
    assert child.kind == "child"
    assert child.linked_run_id == child.id == child.run_id
    assert client.runs.retrieve(child.id).task_identifier == "trace-child"


def test_trace_of_an_unknown_run_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.runs.trace("run_doesnotexist0000000000")
