"""The SDK's retry policy and request encoding (pure client rules, no server needed).

Responses here come from ``httpx.MockTransport``: these tests pin which answers the client
retries and how, which a healthy live server cannot be made to produce on demand. The
end-to-end proof that a retry is deduplicated by the server is in test_client.py.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from reprise.client import Client, delay_value, idempotency_options, iso_utc
from reprise.errors import (
    ApiConnectionError,
    ApiError,
    BadRequestError,
    NotFoundError,
    ServerError,
    UnsendableValueError,
)
from reprise.transport import REQUEST_KEY_HEADER, Transport, env_access_token, env_base_url
from tests.support.live_server import free_port


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering each request with the next of ``answers`` (the last repeats)."""
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return httpx.MockTransport(respond), seen


def make_client(transport: httpx.MockTransport, max_retries: int = 3) -> Client:
    return Client(
        "http://api.test",
        "tr_dev_x",
        transport=transport,
        max_retries=max_retries,
        retry_backoff=0.001,
    )


def error(status: int, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": message}, headers=headers)


def test_5xx_is_retried_with_the_same_request_key_then_succeeds() -> None:
    transport, seen = scripted(error(503), error(502), httpx.Response(200, json={"id": "run_1"}))

    assert make_client(transport).runs.cancel("run_1").id == "run_1"
    assert len(seen) == 3
    assert len({r.headers[REQUEST_KEY_HEADER] for r in seen}) == 1


@pytest.mark.parametrize("status", [408, 409, 429])
def test_timeouts_conflicts_and_rate_limits_are_retried(status: int) -> None:
    transport, seen = scripted(error(status), httpx.Response(200, json={"id": "run_1"}))

    assert make_client(transport).runs.cancel("run_1").id == "run_1"
    assert len(seen) == 2


def test_retries_stop_after_max_retries_with_a_server_error() -> None:
    transport, seen = scripted(error(500, "Internal server error"))

    with pytest.raises(ServerError) as raised:
        make_client(transport, max_retries=2).runs.retrieve("run_1")
    assert len(seen) == 3
    assert (raised.value.status, raised.value.message) == (500, "Internal server error")


def test_x_should_retry_header_overrides_the_status() -> None:
    never, never_seen = scripted(error(503, **{"x-should-retry": "false"}))
    always, always_seen = scripted(
        error(400, **{"x-should-retry": "true"}), httpx.Response(200, json={"id": "run_1"})
    )

    with pytest.raises(ServerError):
        make_client(never).runs.cancel("run_1")
    assert len(never_seen) == 1
    assert make_client(always).runs.cancel("run_1").id == "run_1"
    assert len(always_seen) == 2


@pytest.mark.parametrize(
    ("status", "kind"), [(400, BadRequestError), (404, NotFoundError), (422, BadRequestError)]
)
def test_client_errors_are_not_retried(status: int, kind: type[ApiError]) -> None:
    transport, seen = scripted(error(status, "bad"))

    with pytest.raises(kind):
        make_client(transport).runs.retrieve("run_1")
    assert len(seen) == 1


def test_an_error_body_that_is_not_json_still_gives_a_message() -> None:
    transport, _ = scripted(httpx.Response(418, text="I'm a teapot"))

    with pytest.raises(ApiError) as raised:
        make_client(transport).runs.retrieve("run_1")
    assert type(raised.value) is ApiError
    assert str(raised.value) == "I'm a teapot (HTTP 418)"


def test_unreachable_server_raises_a_connection_error_after_retries() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", "tr_dev_x", max_retries=1, retry_backoff=0)

    with pytest.raises(ApiConnectionError) as raised:
        client.runs.retrieve("run_1")
    assert raised.value.status is None
    assert "could not reach http://127.0.0.1:" in str(raised.value)


def test_run_ids_are_escaped_into_the_path() -> None:
    transport, seen = scripted(error(404, "Run not found"))

    with pytest.raises(NotFoundError):
        make_client(transport).runs.retrieve("../tasks/x")
    assert seen[0].url.raw_path == b"/api/v3/runs/..%2Ftasks%2Fx"


def test_replay_without_overrides_sends_no_body_and_overrides_are_camel_case() -> None:
    transport, seen = scripted(httpx.Response(200, json={"id": "run_2"}))
    client = make_client(transport)

    client.runs.replay("run_1")
    client.runs.replay("run_1", payload=None, max_attempts=2, tags="a", ttl=timedelta(minutes=5))

    assert seen[0].content == b""
    assert seen[1].content == b'{"tags":["a"],"ttl":300,"maxAttempts":2,"payload":null}'


def test_idempotency_keys_are_hashed_like_the_official_sdk() -> None:
    digest = hashlib.sha256(b"a-b").hexdigest()

    assert idempotency_options(["a", "b"]) == {
        "idempotencyKey": digest,
        "idempotencyKeyOptions": {"key": "a-b", "scope": "run"},
    }
    assert idempotency_options(digest) == {"idempotencyKey": digest}


def test_delays_become_duration_strings_or_utc_iso_dates() -> None:
    paris = timezone(timedelta(hours=2))

    assert delay_value("1h30m") == "1h30m"
    assert delay_value(timedelta(minutes=90, microseconds=1)) == "5401s"
    assert delay_value(datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=paris)) == (
        "2030-01-01T10:00:00.123Z"
    )
    assert iso_utc(datetime(2030, 1, 1)) == "2030-01-01T00:00:00.000Z"
    assert iso_utc(datetime(2030, 1, 1, tzinfo=UTC)) == "2030-01-01T00:00:00.000Z"


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REPRISE_API_URL", "TRIGGER_API_URL", "REPRISE_API_KEY", "TRIGGER_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert env_base_url() == "http://127.0.0.1:8000"
    assert env_access_token() is None

    monkeypatch.setenv("TRIGGER_API_URL", "http://trigger.test/")
    monkeypatch.setenv("TRIGGER_SECRET_KEY", "tr_dev_trigger")
    assert Transport().base_url == "http://trigger.test"
    assert Transport().access_token == "tr_dev_trigger"

    monkeypatch.setenv("REPRISE_API_URL", "http://reprise.test")
    monkeypatch.setenv("REPRISE_API_KEY", "tr_prod_reprise")
    assert (env_base_url(), env_access_token()) == ("http://reprise.test", "tr_prod_reprise")

    # REPRISE_SECRET_KEY is the server's signing secret: the client never reads it.
    monkeypatch.delenv("REPRISE_API_KEY")
    monkeypatch.setenv("REPRISE_SECRET_KEY", "tr_dev_looks_like_a_key")
    assert env_access_token() == "tr_dev_trigger"


@pytest.mark.parametrize(
    ("payload", "metadata", "message"),
    [
        ({"rows": [{"price": float("nan")}]}, None,
         "payload.rows[0].price is NaN, which JSON cannot carry"),
        ([1, float("inf")], None, "payload[1] is Infinity, which JSON cannot carry"),
        ({"a": 1}, {"m": -float("inf")}, "options.metadata.m is -Infinity, which JSON cannot carry"),
        ({"s": "\ud800"}, None, "payload.s contains a lone surrogate, which is not valid Unicode"),
    ],
)
def test_a_value_json_cannot_carry_is_refused_before_anything_is_sent(
    payload: object, metadata: dict[str, float] | None, message: str
) -> None:
    transport, seen = scripted(httpx.Response(200, json={"id": "run_1"}))

    with pytest.raises(UnsendableValueError) as raised:
        make_client(transport).tasks.trigger("t", payload, metadata=metadata)

    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)
    assert seen == []
