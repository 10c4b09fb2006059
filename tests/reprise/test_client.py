"""The Python SDK against a live API (uvicorn subprocess) and the in-process Celery worker."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from reprise.client import Client
from reprise.errors import AuthenticationError, BadRequestError, NotFoundError
from reprise.models import Attempt, CanceledRun, RunListItem, TriggeredRun
from reprise.transport import REQUEST_KEY_HEADER
from tests.reprise.helpers import wait_for_run
from tests.support.fixtures import ProjectKeys, run_row
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e


class CountingTransport(httpx.BaseTransport):
    """Forwards to the real server and remembers what was sent."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.inner.handle_request(request)


class LoseFirstResponse(CountingTransport):
    """The first request reaches the server, then its response is lost (connection reset)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if len(self.requests) == 1:
            response.read()
            response.close()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_trigger_then_retrieve_until_completed_gives_typed_output_and_attempts(
    client: Client, celery_worker: Any
) -> None:
    handle = client.tasks.trigger(
        "test-echo", {"hello": "world"}, tags=["b", "a"], metadata={"source": "sdk"}
    )

    assert isinstance(handle, TriggeredRun)
    assert handle.id.startswith("run_")
    assert handle.is_cached is False
    assert handle.public_access_token
    assert handle.public_access_token.count(".") == 2
    run = wait_for_run(client, handle.id, "COMPLETED")
    assert run.output == {"payload": {"hello": "world"}, "attempt": 1, "isReplay": False}
    assert run.payload == {"hello": "world"}
    assert run.task_identifier == "test-echo"
    assert run.tags == ["a", "b"]
    assert run.metadata == {"source": "sdk"}
    assert run.is_success
    assert run.is_completed
    assert not run.is_failed
    assert isinstance(run.created_at, datetime)
    assert run.created_at.tzinfo is not None
    assert run.attempt_count == 1
    assert isinstance(run.attempts[0], Attempt)
    assert run.attempts[0].id.startswith("attempt_")
    assert run.attempts[0].status == "COMPLETED"
    assert run.related_runs.children == []


def test_idempotent_retrigger_returns_the_same_run_hashed_like_the_official_sdk(
    client: Client,
) -> None:
    first = client.tasks.trigger("test-echo", {"n": 1}, idempotency_key="order-1", delay="1h")
    second = client.tasks.trigger("test-echo", {"n": 2}, idempotency_key="order-1", delay="1h")
    parts = client.tasks.trigger("test-echo", idempotency_key=["order", "2"], delay="1h")

    assert second.id == first.id
    assert (first.is_cached, second.is_cached) == (False, True)
    assert client.runs.retrieve(first.id).idempotency_key == "order-1"
    assert run_row(first.id).idempotency_key_hash == hashlib.sha256(b"order-1").hexdigest()
    assert run_row(parts.id).idempotency_key_hash == hashlib.sha256(b"order-2").hexdigest()
    assert client.runs.retrieve(parts.id).idempotency_key == "order-2"


def test_list_auto_paginates_newest_first_across_pages(
    live_server: LiveServer, project: ProjectKeys
) -> None:
    counting = CountingTransport()
    client = Client(live_server.base_url, project.keys["dev"], transport=counting)
    ids = [client.tasks.trigger("test-echo", {"i": i}, delay="1h").id for i in range(5)]
    before = len(counting.requests)

    listed = list(client.runs.list(page_size=2))

    assert [item.id for item in listed] == ids[::-1]
    assert all(isinstance(item, RunListItem) and item.status == "DELAYED" for item in listed)
    pages = counting.requests[before:]
    assert len(pages) == 3
    assert "page%5Bafter%5D" not in str(pages[0].url)
    assert f"page%5Bafter%5D={ids[3]}" in str(pages[1].url)


def test_list_filters_and_limit_stop_early(client: Client) -> None:
    tagged = client.tasks.trigger("test-echo", delay="1h", tags="vip").id
    other = client.tasks.trigger("test-block", delay="1h").id
    client.runs.cancel(other)

    assert [r.id for r in client.runs.list(tag="vip")] == [tagged]
    assert [r.id for r in client.runs.list(status=["CANCELED", "FAILED"])] == [other]
    assert [r.id for r in client.runs.list(task_identifier="test-echo", status="DELAYED")] == [
        tagged
    ]
    assert len(list(client.runs.list(limit=1, page_size=1))) == 1
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert len(list(client.runs.list(created_from=an_hour_ago))) == 2
    assert list(client.runs.list(created_to=an_hour_ago)) == []


def test_cancel_a_delayed_run(client: Client) -> None:
    run_id = client.tasks.trigger("test-echo", delay=timedelta(hours=1)).id

    canceled = client.runs.cancel(run_id)
    assert isinstance(canceled, CanceledRun)
    assert canceled.id == run_id
    assert canceled.to_json_dict() == {"id": run_id}
    run = client.runs.retrieve(run_id)
    assert run.status == "CANCELED"
    assert run.is_cancelled


def test_wrong_key_raises_authentication_error(
    live_server: LiveServer, project: ProjectKeys
) -> None:
    client = Client(live_server.base_url, "tr_dev_not_a_real_key", max_retries=0)

    with pytest.raises(AuthenticationError) as raised:
        client.tasks.trigger("test-echo")
    assert raised.value.status == 401
    assert raised.value.message == "Invalid or Missing API key"
    assert str(raised.value) == "Invalid or Missing API key (HTTP 401)"


def test_not_found_and_bad_requests_raise_typed_errors(
    client: Client, project: ProjectKeys
) -> None:
    staging = Client(client.base_url, project.keys["staging"])
    dev_run = client.tasks.trigger("test-echo", delay="1h").id

    with pytest.raises(NotFoundError, match="Run not found"):
        staging.runs.retrieve(dev_run)
    with pytest.raises(NotFoundError) as unknown_task:
        client.tasks.trigger("no-such-task")
    assert unknown_task.value.status == 404
    with pytest.raises(BadRequestError) as bad_id:
        client.runs.retrieve("not-a-run-id")
    assert (bad_id.value.status, bad_id.value.message) == (400, "Invalid or missing run ID")
    with pytest.raises(BadRequestError) as too_many_tags:
        client.tasks.trigger("test-echo", tags=[f"t{i}" for i in range(11)])
    assert too_many_tags.value.status == 400


def test_same_request_key_sent_twice_creates_one_run(client: Client) -> None:
    body = {"payload": {"n": 1}, "options": {"delay": "1h"}}
    path = "/api/v1/tasks/test-echo/trigger"

    first = client.transport.request("POST", path, json_body=body, request_key="req-123")
    second = client.transport.request("POST", path, json_body=body, request_key="req-123")

    assert first.json()["id"] == second.json()["id"]
    assert [r.id for r in client.runs.list()] == [first.json()["id"]]


def test_retry_after_a_lost_response_reuses_the_request_key_and_creates_one_run(
    live_server: LiveServer, project: ProjectKeys
) -> None:
    lossy = LoseFirstResponse()
    client = Client(live_server.base_url, project.keys["dev"], transport=lossy, retry_backoff=0.01)

    handle = client.tasks.trigger("test-echo", {"n": 1}, delay="1h")

    assert len(lossy.requests) == 2
    keys = {request.headers[REQUEST_KEY_HEADER] for request in lossy.requests}
    assert len(keys) == 1
    assert [r.id for r in client.runs.list()] == [handle.id]
    assert handle.is_cached is False


def test_each_logical_request_gets_its_own_request_key(
    live_server: LiveServer, project: ProjectKeys
) -> None:
    counting = CountingTransport()
    client = Client(live_server.base_url, project.keys["dev"], transport=counting)

    a = client.tasks.trigger("test-echo", delay="1h")
    b = client.tasks.trigger("test-echo", delay="1h")

    assert a.id != b.id
    assert len({request.headers[REQUEST_KEY_HEADER] for request in counting.requests}) == 2
