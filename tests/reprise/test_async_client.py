"""``reprise.AsyncClient``: the SDK for asyncio, against the live API (and, for the retry
rules, ``httpx.MockTransport``). It runs the very resource definitions the sync
:class:`~reprise.client.Client` runs; the last tests check that nothing is written twice.

The project has no asyncio plugin for pytest: each test runs its coroutine with
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import reprise
from reprise._resource import Definition, Listing, Resource, definitions
from reprise.bulk import RunsBulk
from reprise.client import AsyncClient, Client, Runs, Tasks
from reprise.concurrency_limits import ConcurrencyLimits
from reprise.errors import (
    ApiConnectionError,
    ApiError,
    BadRequestError,
    NotFoundError,
    RunPollTimeoutError,
    ServerError,
)
from reprise.models import (
    BulkAction,
    BulkActionHandle,
    BulkActionPreview,
    CanceledRun,
    Run,
    RunListItem,
    TriggeredRun,
    WaitpointToken,
    WaitpointTokenDetail,
    WaitpointTokenItem,
)
from reprise.queues import Queues
from reprise.schedules import Schedules
from reprise.transport import REQUEST_KEY_HEADER
from reprise.waitpoints import Waitpoints
from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer
from tests.support.schedules import clean_schedules

__all__ = ["clean_schedules"]

T = TypeVar("T")
Body = Callable[[AsyncClient], Coroutine[Any, Any, T]]


@pytest.fixture
def with_client(
    live_server: LiveServer, project: ProjectKeys
) -> Callable[[Body[Any]], Any]:
    """Runs ``body(client)`` in a fresh event loop, with an AsyncClient on the project's dev
    key (fast retries, as the sync ``client`` fixture)."""

    def run(body: Body[T]) -> T:
        async def main() -> T:
            async with AsyncClient(
                live_server.base_url, project.keys["dev"], retry_backoff=0.01
            ) as sdk:
                return await body(sdk)

        return asyncio.run(main())

    return run


async def collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


class CountingAsyncTransport(httpx.AsyncBaseTransport):
    """Forwards to the real server and remembers what was sent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def scripted(
    *answers: httpx.Response | Exception,
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering each request with the next of ``answers`` (the last repeats);
    an exception is raised instead of answering."""
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(respond), seen


def mocked(transport: httpx.MockTransport, max_retries: int = 3) -> AsyncClient:
    return AsyncClient(
        "http://api.test", "tr_dev_x", transport=transport, max_retries=max_retries,
        retry_backoff=0.001,
    )


def error(status: int, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message}, headers=headers)


# The live API.


@pytest.mark.usefixtures("celery_worker")
def test_trigger_then_poll_until_completed(with_client: Callable[[Body[Any]], Any]) -> None:
    async def body(sdk: AsyncClient) -> tuple[TriggeredRun, Run]:
        handle = await sdk.tasks.trigger("test-echo", {"hello": "async"}, tags="aio")
        return handle, await sdk.runs.poll(handle.id, timeout=60, interval=0.1)

    handle, run = with_client(body)

    assert isinstance(handle, TriggeredRun)
    assert handle.id.startswith("run_")
    assert handle.is_cached is False
    assert handle.public_access_token
    assert isinstance(run, Run)
    assert (run.id, run.status, run.tags) == (handle.id, "COMPLETED", ["aio"])
    assert run.output == {"payload": {"hello": "async"}, "attempt": 1, "isReplay": False}


def test_list_iterates_pages_asynchronously(live_server: LiveServer, project: ProjectKeys) -> None:
    counting = CountingAsyncTransport()

    async def main() -> tuple[list[str], list[RunListItem], int, list[RunListItem]]:
        async with AsyncClient(live_server.base_url, project.keys["dev"],
                               transport=counting) as sdk:
            ids = [(await sdk.tasks.trigger("test-echo", {"i": i}, delay="1h")).id
                   for i in range(5)]
            before = len(counting.requests)
            listed = await collect(sdk.runs.list(page_size=2))
            pages = len(counting.requests) - before
            limited = await collect(sdk.runs.list(page_size=2, limit=3))
            return ids, listed, pages, limited

    ids, listed, pages, limited = asyncio.run(main())

    assert [item.id for item in listed] == ids[::-1]
    assert all(isinstance(item, RunListItem) and item.status == "DELAYED" for item in listed)
    assert pages == 3
    assert f"page%5Bafter%5D={ids[3]}" in str(counting.requests[-1].url)
    assert [item.id for item in limited] == ids[::-1][:3]


@pytest.mark.usefixtures("celery_worker")
def test_retrieve_reschedule_replay_and_cancel(with_client: Callable[[Body[Any]], Any]) -> None:
    async def body(sdk: AsyncClient) -> dict[str, Any]:
        run_id = (await sdk.tasks.trigger("test-echo", {"n": 1}, delay="1h")).id
        before = await sdk.runs.retrieve(run_id)
        moved = await sdk.runs.reschedule(run_id, timedelta(hours=2))
        replay = await sdk.runs.replay(run_id, payload={"n": 2})
        replayed = await sdk.runs.poll(replay.id, timeout=60, interval=0.1)
        canceled = await sdk.runs.cancel(run_id)
        after = await sdk.runs.retrieve(run_id)
        return {"id": run_id, "before": before, "moved": moved, "replay": replay,
                "replayed": replayed, "canceled": canceled, "after": after}

    seen = with_client(body)

    before, moved = seen["before"], seen["moved"]
    assert isinstance(before, Run)
    assert before.status == "DELAYED"
    assert before.delayed_until is not None
    assert moved.delayed_until is not None
    assert moved.delayed_until > before.delayed_until
    assert isinstance(seen["replay"], TriggeredRun)
    assert seen["replay"].id != seen["id"]
    assert (seen["replayed"].status, seen["replayed"].replayed_from) == ("COMPLETED", seen["id"])
    assert seen["replayed"].output["payload"] == {"n": 2}
    assert seen["canceled"] == CanceledRun(id=seen["id"])
    assert seen["after"].status == "CANCELED"


def test_trigger_sends_the_flow_options_as_the_sync_client_does(
    with_client: Callable[[Body[Any]], Any], celery_worker: Any
) -> None:
    """A numeric ``concurrency_key``, a ``priority`` and ``concurrency`` (named limits),
    and a replay into another key: what Postgres stores for the runs."""
    from tests.support.fixtures import run_row, wait_for

    async def body(sdk: AsyncClient) -> tuple[str, str]:
        run = await sdk.tasks.trigger("test-limited", {"n": 1}, delay="1h", concurrency_key=7,
                                      priority=30, concurrency=["test-shared"])
        replay = await sdk.runs.replay(run.id, delay="1h", concurrency_key="8")
        return run.id, replay.id

    run_id, replay_id = with_client(body)
    row = run_row(run_id)
    assert (row.concurrency_key, row.priority, row.concurrency_limits) == (
        "7", 30, ["task/test-limited", "test-shared"])
    replayed = wait_for(lambda: run_row(replay_id), what="the replay created")
    assert (replayed.concurrency_key, replayed.priority, replayed.concurrency_limits) == (
        "8", 30, ["task/test-limited", "test-shared"])


def test_errors_are_the_sync_clients_exception_classes(
    with_client: Callable[[Body[Any]], Any], live_server: LiveServer, project: ProjectKeys
) -> None:
    calls: list[tuple[str, Callable[[Any], Any]]] = [
        ("unknown run", lambda sdk: sdk.runs.retrieve("run_" + "a" * 24)),
        ("bad run id", lambda sdk: sdk.runs.retrieve("not-a-run-id")),
        ("unknown task", lambda sdk: sdk.tasks.trigger("no-such-task")),
        ("bad delay", lambda sdk: sdk.tasks.trigger("test-echo", delay="soon")),
        ("replay unknown", lambda sdk: sdk.runs.replay("run_" + "a" * 24)),
    ]

    def sync_error(call: Callable[[Any], Any]) -> ApiError:
        with Client(live_server.base_url, project.keys["dev"]) as sdk, \
                pytest.raises(ApiError) as raised:
            call(sdk)
        return raised.value

    async def body(sdk: AsyncClient) -> list[ApiError]:
        errors = []
        for _, call in calls:
            with pytest.raises(ApiError) as raised:
                await call(sdk)
            errors.append(raised.value)
        return errors

    async_errors = with_client(body)

    for (what, call), async_error in zip(calls, async_errors, strict=True):
        expected = sync_error(call)
        assert type(async_error) is type(expected), what
        assert (async_error.status, async_error.message) == (expected.status, expected.message)
    assert [type(e) for e in async_errors] == [
        NotFoundError, BadRequestError, NotFoundError, BadRequestError, NotFoundError]


def test_poll_sleeps_with_asyncio_and_times_out(
    with_client: Callable[[Body[Any]], Any],
) -> None:
    """Other tasks run while ``poll`` waits: a blocking ``time.sleep`` would starve the
    ticker for the whole half second (the requests themselves take milliseconds)."""

    async def body(sdk: AsyncClient) -> tuple[RunPollTimeoutError, int]:
        run_id = (await sdk.tasks.trigger("test-echo", delay="1h")).id
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        try:
            with pytest.raises(RunPollTimeoutError) as caught:
                await sdk.runs.poll(run_id, timeout=0.5, interval=0.1)
        finally:
            ticking.cancel()
        assert 0.5 <= time.monotonic() - started < 3
        return caught.value, ticks

    timed_out, ticks = with_client(body)

    assert timed_out.run is not None
    assert timed_out.run.status == "DELAYED"
    assert ticks >= 10  # the loop ran other tasks while poll waited


@pytest.mark.usefixtures("celery_worker")
def test_bulk_preview_cancel_poll_retrieve_and_list(
    with_client: Callable[[Body[Any]], Any],
) -> None:
    async def body(sdk: AsyncClient) -> dict[str, Any]:
        ids = [(await sdk.tasks.trigger("test-echo", {"i": i}, delay="1h")).id
               for i in range(2)]
        preview = await sdk.runs.bulk.cancel(run_ids=ids, dry_run=True)
        created = await sdk.runs.bulk.cancel(run_ids=ids)
        assert isinstance(created, BulkActionHandle)
        done = await sdk.runs.bulk.poll(created.id, timeout=60, interval=0.1)
        return {
            "preview": preview, "created": created, "done": done,
            "retrieved": await sdk.runs.bulk.retrieve(created.id),
            "listed": await collect(sdk.runs.bulk.list(limit=5)),
            "statuses": {(await sdk.runs.retrieve(run_id)).status for run_id in ids},
        }

    seen = with_client(body)

    assert isinstance(seen["preview"], BulkActionPreview)
    assert seen["preview"].count == 2
    done = seen["done"]
    assert isinstance(done, BulkAction)
    assert (done.type, done.status, done.counts.success) == ("CANCEL", "COMPLETED", 2)
    assert seen["retrieved"].id == seen["created"].id
    assert seen["created"].id in [action.id for action in seen["listed"]]
    assert seen["statuses"] == {"CANCELED"}


def test_waitpoint_tokens(with_client: Callable[[Body[Any]], Any]) -> None:
    async def body(sdk: AsyncClient) -> dict[str, Any]:
        token = await sdk.waitpoints.create_token(idempotency_key="aio-1", tags="aio")
        again = await sdk.waitpoints.create_token(idempotency_key="aio-1")
        waiting = await sdk.waitpoints.retrieve_token(token)
        completed = await sdk.waitpoints.complete_token(token.id, {"ok": True})
        return {
            "token": token, "again": again, "waiting": waiting, "completed": completed,
            "done": await sdk.waitpoints.retrieve_token(token.id),
            "listed": await collect(sdk.waitpoints.list_tokens(tags="aio", page_size=1)),
        }

    seen = with_client(body)

    token = seen["token"]
    assert isinstance(token, WaitpointToken)
    assert token.public_access_token
    assert (seen["again"].id, seen["again"].is_cached) == (token.id, True)
    assert isinstance(seen["waiting"], WaitpointTokenDetail)
    assert seen["waiting"].status == "WAITING"
    assert seen["completed"] is True
    assert (seen["done"].status, seen["done"].output) == ("COMPLETED", {"ok": True})
    assert [(t.id, type(t)) for t in seen["listed"]] == [(token.id, WaitpointTokenItem)]


@pytest.mark.usefixtures("clean_schedules")
def test_the_other_namespaces(with_client: Callable[[Body[Any]], Any]) -> None:
    async def body(sdk: AsyncClient) -> dict[str, Any]:
        created = await sdk.schedules.create(task="test-echo", cron="0 9 * * *")
        return {
            "zones": await sdk.schedules.timezones(),
            "schedules": [s.id async for s in sdk.schedules.list()],
            "deleted": await sdk.schedules.delete(created.id),
            "queues": [q.name async for q in sdk.queues.list()],
            "paused": await sdk.queues.pause("task/test-echo"),
            "resumed": await sdk.queues.resume("task/test-echo"),
            "created": created.id,
        }

    seen = with_client(body)

    assert "Europe/London" in seen["zones"]
    assert seen["schedules"] == [seen["created"]] == [seen["deleted"]]
    assert (seen["paused"].paused, seen["resumed"].paused) == (True, False)


# Retries and errors, without a server.


def test_a_transient_503_is_retried_with_the_same_request_key() -> None:
    transport, seen = scripted(error(503), httpx.Response(200, json={"id": "run_1"}))

    async def main() -> CanceledRun:
        async with mocked(transport) as sdk:
            return await sdk.runs.cancel("run_1")

    assert asyncio.run(main()).id == "run_1"
    assert len(seen) == 2
    assert len({request.headers[REQUEST_KEY_HEADER] for request in seen}) == 1


def test_connection_errors_are_retried_then_raised_as_the_sync_client_raises() -> None:
    reset = httpx.ReadError("connection reset by peer")
    flaky, flaky_seen = scripted(reset, httpx.Response(200, json={"id": "run_1"}))
    down, down_seen = scripted(reset)

    async def main() -> None:
        async with mocked(flaky) as sdk:
            assert (await sdk.runs.cancel("run_1")).id == "run_1"
        async with mocked(down, max_retries=1) as sdk:
            with pytest.raises(ApiConnectionError, match=r"could not reach http://api\.test"):
                await sdk.runs.retrieve("run_1")

    asyncio.run(main())
    assert len(flaky_seen) == 2
    assert len({request.headers[REQUEST_KEY_HEADER] for request in flaky_seen}) == 1
    assert len(down_seen) == 2


@pytest.mark.parametrize(
    ("answer", "kind", "attempts"),
    [
        (lambda: error(404, "Run not found"), NotFoundError, 1),
        (lambda: error(400, "bad"), BadRequestError, 1),
        (lambda: error(500, "Internal server error"), ServerError, 3),
        (lambda: error(503, **{"x-should-retry": "false"}), ServerError, 1),
    ],
)
def test_errors_and_retries_match_the_sync_client(
    answer: Callable[[], httpx.Response], kind: type[ApiError], attempts: int
) -> None:
    sync_transport, sync_seen = scripted(answer())
    async_transport, async_seen = scripted(answer())
    sync = Client("http://api.test", "tr_dev_x", transport=sync_transport, max_retries=2,
                  retry_backoff=0.001)

    with pytest.raises(kind) as sync_raised:
        sync.runs.retrieve("run_1")

    async def main() -> None:
        async with mocked(async_transport, max_retries=2) as sdk:
            with pytest.raises(kind) as async_raised:
                await sdk.runs.retrieve("run_1")
        assert str(async_raised.value) == str(sync_raised.value)

    asyncio.run(main())
    assert len(async_seen) == len(sync_seen) == attempts
    assert async_seen[0].url == sync_seen[0].url
    assert async_seen[0].headers["authorization"] == sync_seen[0].headers["authorization"]


def test_a_value_json_cannot_carry_is_refused_before_anything_is_sent() -> None:
    transport, seen = scripted(httpx.Response(200, json={"id": "run_1"}))

    async def main() -> None:
        async with mocked(transport) as sdk:
            with pytest.raises(ValueError, match=r"payload\.x is NaN"):
                await sdk.tasks.trigger("t", {"x": float("nan")})

    asyncio.run(main())
    assert seen == []


# One implementation.

RESOURCES: list[type[Resource[Any]]] = [
    Tasks, Runs, RunsBulk, Schedules, Queues, ConcurrencyLimits, Waitpoints,
]


def namespaces(sdk: Client | AsyncClient) -> dict[str, Resource[Any]]:
    return {
        "tasks": sdk.tasks, "runs": sdk.runs, "runs.bulk": sdk.runs.bulk,
        "schedules": sdk.schedules, "queues": sdk.queues,
        "concurrency_limits": sdk.concurrency_limits, "waitpoints": sdk.waitpoints,
    }


def test_both_clients_are_made_of_the_same_resource_definitions() -> None:
    sync, asynchronous = Client("http://api.test"), AsyncClient("http://api.test")
    sync_spaces, async_spaces = namespaces(sync), namespaces(asynchronous)

    assert [type(space) for space in sync_spaces.values()] == RESOURCES
    assert [type(space) for space in async_spaces.values()] == RESOURCES
    counted = 0
    for path, resource in sync_spaces.items():
        defined = definitions(type(resource))
        public = {name for name in dir(type(resource)) if not name.startswith("_")}
        # Every public method of a resource is one definition, nothing else.
        assert public == set(defined), path
        for name, definition in defined.items():
            assert isinstance(definition, Definition)
            sync_method = getattr(resource, name)
            async_method = getattr(async_spaces[path], name)
            assert inspect.signature(sync_method) == inspect.signature(async_method)
            assert sync_method.__doc__ == async_method.__doc__ == definition.__doc__
            assert not inspect.iscoroutinefunction(sync_method)
            assert inspect.iscoroutinefunction(async_method) != isinstance(definition, Listing)
            counted += 1
    assert counted >= 35
    assert type(reprise.runs) is Runs
    assert type(reprise.runs.bulk) is RunsBulk


def test_no_resource_method_is_written_twice() -> None:
    """The resource modules hold the one implementation: generators, no async copies; the
    transports alone do I/O (one loop each), and the retry rules are written once."""
    for resource in RESOURCES:
        module = sys.modules[resource.__module__]
        source = Path(inspect.getfile(module)).read_text()
        assert "async def" not in source.replace("async def __aenter__", "").replace(
            "async def __aexit__", "").replace("async def close", ""), module.__name__
        assert ".transport.request" not in source, module.__name__
        assert "time.sleep" not in source, module.__name__
    transport_source = Path(inspect.getfile(sys.modules["reprise.transport"])).read_text()
    assert transport_source.count("def retry_delay(") == 1
    assert transport_source.count("raise error_from(") == 1
    assert transport_source.count("REQUEST_KEY_HEADER:") == 1


def test_listings_are_async_iterators_and_operations_awaitables() -> None:
    transport, _ = scripted(
        httpx.Response(200, json={"data": [], "pagination": {}, "timezones": ["UTC"]})
    )

    async def main() -> None:
        async with mocked(transport) as sdk:
            listing = sdk.runs.list()
            assert isinstance(listing, AsyncIterator)
            assert await collect(listing) == []
            pending = sdk.schedules.timezones()
            assert isinstance(pending, Awaitable)
            assert await pending == ["UTC"]

    asyncio.run(main())


TYPED = '''
from collections.abc import AsyncIterator, Iterator
from typing import assert_type

import reprise
from reprise.models import (
    BulkAction, BulkActionHandle, BulkActionPreview, ConcurrencyLimitItem,
    ConcurrencyLimitKeyItem, QueueItem, Run, RunListItem, RunLogLine, Schedule, TriggeredRun,
    WaitpointTokenDetail, WaitpointTokenItem,
)


async def both(a: reprise.AsyncClient, c: reprise.Client) -> None:
    assert_type(c.tasks.trigger("t", {}), TriggeredRun)
    assert_type(await a.tasks.trigger("t", {}), TriggeredRun)
    assert_type(c.runs.poll("r", timeout=1), Run)
    assert_type(await a.runs.poll("r", timeout=1), Run)
    assert_type(c.runs.list(status="FAILED"), Iterator[RunListItem])
    assert_type(a.runs.list(status="FAILED"), AsyncIterator[RunListItem])
    assert_type(await a.runs.logs("r"), list[RunLogLine])
    assert_type(await a.runs.bulk.cancel(run_ids=["r"]), BulkActionHandle | BulkActionPreview)
    assert_type(a.runs.bulk.list(), AsyncIterator[BulkAction])
    assert_type(await a.schedules.retrieve("s"), Schedule)
    assert_type(a.queues.list(), AsyncIterator[QueueItem])
    assert_type(c.concurrency_limits.retrieve("n"), ConcurrencyLimitItem)
    assert_type(await a.concurrency_limits.retrieve("n"), ConcurrencyLimitItem)
    assert_type(await a.concurrency_limits.reset("n", "k"), ConcurrencyLimitKeyItem)
    assert_type(
        await a.concurrency_limits.override("n", per_key=1, concurrency_key="k"),
        ConcurrencyLimitKeyItem,
    )
    assert_type(await a.waitpoints.retrieve_token("w"), WaitpointTokenDetail)
    assert_type(a.waitpoints.list_tokens(), AsyncIterator[WaitpointTokenItem])
    assert_type(reprise.runs.retrieve("r"), Run)
    await a.runs.retrieve(1)  # a wrong argument is an error
'''


def test_the_async_methods_have_the_sync_methods_types(tmp_path: Path) -> None:
    """mypy (strict) sees each async method with the sync one's parameters and result."""
    from mypy import api

    snippet = tmp_path / "typed.py"
    snippet.write_text(TYPED)
    root = Path(__file__).resolve().parents[2]
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(root / ".mypy_cache"), str(snippet)]
    )

    wrong = TYPED.splitlines().index("    await a.runs.retrieve(1)  # a wrong argument is an error")
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out + err
    assert f"typed.py:{wrong + 1}: error: Argument 1" in errors[0]
    assert status == 1
