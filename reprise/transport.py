"""The HTTP layer of the SDK: authentication, JSON, errors and retries.

Retries follow the official SDK: connection errors, 408, 409, 429, 5xx and any response
carrying ``x-should-retry: true`` are retried with exponential backoff (``x-should-retry:
false`` forbids it). Every logical request carries one ``x-trigger-request-idempotency-key``
that stays the same across its retries, so a trigger whose response was lost is not
created twice: the server answers the retry with the run the first attempt created.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypedDict

import httpx

from reprise.errors import ApiConnectionError, ApiError, error_for

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_VERSION = "2025-07-16"
SDK_VERSION = "0.1.0"
REQUEST_KEY_HEADER = "x-trigger-request-idempotency-key"
MAX_BACKOFF_SECONDS = 30.0
RETRY_STATUSES = frozenset({408, 409, 429})
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def env_base_url() -> str:
    return (
        os.environ.get("REPRISE_API_URL") or os.environ.get("TRIGGER_API_URL") or DEFAULT_BASE_URL
    )


def env_access_token() -> str | None:
    """The secret key from ``REPRISE_API_KEY`` or ``TRIGGER_SECRET_KEY``; only ``tr_…``
    values count. (``REPRISE_SECRET_KEY`` is the *server's* signing secret, never read here.)
    """
    for name in ("REPRISE_API_KEY", "TRIGGER_SECRET_KEY"):
        value = os.environ.get(name, "").strip()
        if value.startswith("tr_"):
            return value
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(value: Any) -> bytes:
    """JSON for a request body; dates become ISO strings, anything else unknown is an error."""
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode()


def _error_message(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:500] or response.reason_phrase or "request failed"), text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], body
    return (response.reason_phrase or "request failed"), body


def error_from(response: httpx.Response) -> ApiError:
    """The exception for an unsuccessful response, with the API's ``{"error"}`` message."""
    message, body = _error_message(response)
    return error_for(response.status_code, message, response.headers, body)


class TransportOptions(TypedDict, total=False):
    """The keyword options of :class:`Transport` (a :class:`~reprise.client.Client`
    passes them through)."""

    timeout: float
    max_retries: int
    retry_backoff: float
    transport: httpx.BaseTransport | None


class Transport:
    """One configured connection to a Reprise API (thread-safe, keeps connections alive)."""

    def __init__(
        self,
        base_url: str | None = None,
        access_token: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        retry_backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or env_base_url()).rstrip("/")
        self.access_token = access_token if access_token is not None else env_access_token()
        self.max_retries = max(0, max_retries)
        self.retry_backoff = retry_backoff
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "x-trigger-api-version": API_VERSION,
            "x-trigger-source": "reprise-python",
            "user-agent": f"reprise-python/{SDK_VERSION}",
        }
        if self.access_token:
            headers["authorization"] = f"Bearer {self.access_token}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        request_key: str | None = None,
    ) -> httpx.Response:
        """Send one logical request, retrying transient failures with the same request key.

        Returns the successful response; raises :class:`~reprise.errors.ApiError` (a subclass
        matching the status) or :class:`~reprise.errors.ApiConnectionError`.
        """
        headers = {REQUEST_KEY_HEADER: request_key or str(uuid.uuid4())}
        content = encode_json(json_body) if json_body is not None else None
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method, path, content=content, params=params, headers=headers
                )
            except _TRANSIENT as exc:
                if attempt >= self.max_retries:
                    raise ApiConnectionError(
                        f"could not reach {self.base_url}: {type(exc).__name__}: {exc}"
                    ) from exc
                delay = self._backoff(attempt)
            else:
                if response.is_success:
                    return response
                retry_in = self._retry_delay(response, attempt)
                if retry_in is None:
                    raise error_from(response)
                delay = retry_in
            time.sleep(delay)
            attempt += 1

    def request_json(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        response = self.request(method, path, json_body=json_body, params=params)
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code, "the API answered with a body that is not JSON"
            ) from None

    def _backoff(self, attempt: int) -> float:
        base = min(self.retry_backoff * float(2**attempt), MAX_BACKOFF_SECONDS)
        return base * (0.75 + random.random() * 0.5)  # jitter spreads out retrying clients

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying ``response``, or None when it must not be retried."""
        if attempt >= self.max_retries:
            return None
        should_retry = response.headers.get("x-should-retry")
        if should_retry == "false":
            return None
        status = response.status_code
        if should_retry != "true" and status not in RETRY_STATUSES and status < 500:
            return None
        hinted = _server_hint(response)
        if hinted is not None:
            return min(hinted, MAX_BACKOFF_SECONDS)
        return self._backoff(attempt)


def _server_hint(response: httpx.Response) -> float | None:
    """The wait a 429/503 asks for (``retry-after`` or ``x-ratelimit-reset`` in epoch ms)."""
    reset = response.headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) / 1000 - time.time())
    after = response.headers.get("retry-after")
    if not after:
        return None
    try:
        return max(0.0, float(after))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(after).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
