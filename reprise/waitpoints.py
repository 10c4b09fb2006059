"""``reprise.waitpoints``: tokens a run waits for until someone completes them (a person
approving, a webhook), over the API, as ``wait.createToken``, ``listTokens``,
``retrieveToken`` and ``completeToken`` of Trigger.dev's SDK::

    token = reprise.waitpoints.create_token(timeout="1h", tags=["order:42"])
    send_approval_email(link=token.url)          # a POST of JSON there completes it
    # in a task: approved = ctx.wait_for_token(token.id)
    reprise.waitpoints.complete_token(token.id, {"approved": True})
    reprise.waitpoints.retrieve_token(token.id).output   # {"approved": True}
    for item in reprise.waitpoints.list_tokens(status="WAITING", tags="order:42"):
        print(item.id, item.status, item.created_at)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from reprise._resource import Listing, M, Operation, Resource
from reprise._sansio import Feed, Op, call, call_json, cursor_pages
from reprise.models import WaitpointToken, WaitpointTokenDetail, WaitpointTokenItem

PATH = "/api/v1/waitpoints/tokens"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _timeout(value: str | datetime | timedelta) -> str:
    """A duration string (``"1h"``), or a date (a datetime, or a timedelta from now)."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, timedelta):
        return f"{max(0, math.ceil(value.total_seconds()))}s"
    if isinstance(value, str):
        return value
    raise TypeError("timeout must be a duration string, a datetime or a timedelta")


def _csv(value: str | Iterable[str] | None) -> str | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    return ",".join(items) or None


def _token_path(token: str | WaitpointToken | WaitpointTokenItem, suffix: str = "") -> str:
    token_id = token if isinstance(token, str) else token.id
    if not token_id:
        raise ValueError("a waitpoint token id is required")
    return f"{PATH}/{quote(token_id, safe='')}{suffix}"


def decode_retrieved(data: dict[str, Any]) -> WaitpointTokenDetail:
    """The retrieve answer with its output decoded (the wire carries a JSON string)."""
    data = dict(data)
    raw = data.get("output")
    if isinstance(raw, str) and "json" in (data.get("outputType") or "application/json"):
        try:
            data["output"] = json.loads(raw)
        except ValueError:
            pass  # not JSON after all: kept as the string it is
    if data.get("outputIsError"):
        error = data.pop("output", None)
        data["error"] = (error.get("message") if isinstance(error, dict) else None) or str(error)
    return WaitpointTokenDetail.model_validate(data)


class Waitpoints(Resource[M]):
    @Operation
    def create_token(
        self,
        *,
        idempotency_key: str | None = None,
        idempotency_key_ttl: str | None = None,
        timeout: str | datetime | timedelta | None = None,
        tags: str | list[str] | None = None,
    ) -> Op[WaitpointToken]:
        """A new WAITING token; with ``idempotency_key`` (live for ``idempotency_key_ttl``,
        30 days by default) the token made with that key before, ``is_cached``. ``timeout``
        (``"30s"``, ``"1h"``, a datetime or a timedelta) times it out if not completed."""
        body = {
            "idempotencyKey": idempotency_key,
            "idempotencyKeyTTL": idempotency_key_ttl,
            "timeout": None if timeout is None else _timeout(timeout),
            "tags": tags,
        }
        response = yield from call(
            "POST", PATH, json_body={k: v for k, v in body.items() if v is not None}
        )
        data = dict(response.json())
        jwt = response.headers.get("x-trigger-jwt")
        if jwt:
            data["publicAccessToken"] = jwt
        return WaitpointToken.model_validate(data)

    @Listing
    def list_tokens(
        self,
        *,
        status: str | Iterable[str] | None = None,
        idempotency_key: str | None = None,
        tags: str | Iterable[str] | None = None,
        period: str | None = None,
        from_: datetime | None = None,
        to: datetime | None = None,
        page_size: int | None = None,
        limit: int | None = None,
    ) -> Feed[WaitpointTokenItem]:
        """The environment's tokens, newest first, fetching pages as it is iterated.

        ``status``: ``WAITING``, ``COMPLETED``, ``TIMED_OUT`` (one or several); ``tags``
        keeps tokens with any of them; ``period`` (``"1d"``), ``from_`` and ``to`` bound
        when they were created. ``limit`` stops after that many (and fetches no further
        page)."""
        params = {
            "filter[status]": _csv(status),
            "filter[idempotencyKey]": idempotency_key,
            "filter[tags]": _csv(tags),
            "filter[createdAt][period]": period,
            "filter[createdAt][from]": _iso(from_) if from_ else None,
            "filter[createdAt][to]": _iso(to) if to else None,
            "page[size]": str(page_size) if page_size else None,
        }
        return cursor_pages(
            PATH, {k: v for k, v in params.items() if v is not None}, limit,
            WaitpointTokenItem.model_validate,
        )

    @Operation
    def retrieve_token(
        self, token: str | WaitpointToken | WaitpointTokenItem
    ) -> Op[WaitpointTokenDetail]:
        """The token, with ``output`` (the data it was completed with) once COMPLETED."""
        return decode_retrieved((yield from call_json("GET", _token_path(token))))

    @Operation
    def complete_token(
        self, token: str | WaitpointToken | WaitpointTokenItem, data: Any = None
    ) -> Op[bool]:
        """Complete the token with ``data`` (any JSON value), queueing the runs waiting on
        it. A token completed (or timed out) before keeps what it had; True either way."""
        answer = yield from call_json(
            "POST", _token_path(token, "/complete"), json_body={"data": data}
        )
        return bool(answer.get("success"))
