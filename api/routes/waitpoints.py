"""Waitpoint tokens (``wait.createToken``, ``listTokens``, ``retrieveToken`` and
``completeToken`` of the official SDK), and a token's callback URL.

A token is something a run waits for (``ctx.wait_for_token``) until someone completes it:
with a secret key, with a public access token scoped ``write:waitpoints:<id>`` (the
``x-trigger-jwt`` its creation answers with), or by POSTing to its ``url`` — which needs no
key, the hash in its path being the proof.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from reprise_server.api.deps import (
    BearerCredential,
    Caller,
    DbSession,
    EdgeRoute,
    WaitpointWriter,
    json_body,
)
from reprise_server.shared.durable import tokens
from reprise_server.shared.durable.schemas import CompleteTokenRequest, CreateTokenRequest
from reprise_server.shared.durations import DurationError, parse_datetime
from reprise_server.shared.errors import (
    BadRequest,
    InvalidInput,
    LengthRequired,
    NotFound,
    TooLarge,
    Unauthorized,
)
from reprise_server.shared.payloads import NotJson, UnstorableValue, read_json
from reprise_server.shared.projects.tokens import create_public_token, token_claims
from reprise_server.shared.settings import get_settings

router = APIRouter(tags=["waitpoints"], route_class=EdgeRoute)

PREFIX = "/api/v1/waitpoints/tokens"
# A creation's body is small (Trigger.dev caps it at 10 KB); a completion's data may be as
# large as any request body (REPRISE_MAX_BODY_BYTES).
MAX_CREATE_BYTES = 10 * 1024

# 400 with a sentence naming the field; nothing is written. No body is a token with no
# options (the SDK sends ``{}``).
CreateBody = Annotated[
    CreateTokenRequest,
    json_body(CreateTokenRequest, error=BadRequest, required=False, max_bytes=MAX_CREATE_BYTES),
]
CompleteBody = Annotated[CompleteTokenRequest, json_body(CompleteTokenRequest, error=BadRequest)]

_LIST_PARAMETERS = frozenset({
    "page[size]", "page[after]", "page[before]", "filter[status]", "filter[idempotencyKey]",
    "filter[tags]", "filter[createdAt][period]", "filter[createdAt][from]",
    "filter[createdAt][to]",
})


def _moment(value: str | None, name: str) -> datetime | None:
    """A date as the SDK sends it: milliseconds since the epoch, or ISO-8601."""
    if not value:
        return None
    try:
        if value.strip().lstrip("-").isdigit():
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        return parse_datetime(value)
    except (DurationError, ValueError, OverflowError, OSError):
        raise InvalidInput(
            f"{name} must be a date (ISO-8601 or milliseconds since the epoch)"
        ) from None


def _page_size(value: str | None) -> int:
    if value is None or value == "":
        return tokens.DEFAULT_PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= tokens.MAX_PAGE_SIZE:
        raise InvalidInput(f"page[size] must be a whole number from 1 to {tokens.MAX_PAGE_SIZE}")
    return int(value)


def _csv(value: str | None) -> list[str] | None:
    items = [item.strip() for item in (value or "").split(",") if item.strip()]
    return items or None


class TokenListQuery:
    """``page[size|after|before]`` and ``filter[status|idempotencyKey|tags|createdAt]``."""

    def __init__(
        self,
        request: Request,
        page_size: Annotated[str | None, Query(
            alias="page[size]", description=f"1 to {tokens.MAX_PAGE_SIZE} "
            f"({tokens.DEFAULT_PAGE_SIZE})")] = None,
        page_after: Annotated[str | None, Query(alias="page[after]",
                                                description="A token id")] = None,
        page_before: Annotated[str | None, Query(alias="page[before]",
                                                 description="A token id")] = None,
        status: Annotated[str | None, Query(
            alias="filter[status]", description="Comma-separated: WAITING, COMPLETED, "
            "TIMED_OUT")] = None,
        idempotency_key: Annotated[str | None, Query(alias="filter[idempotencyKey]")] = None,
        tags: Annotated[str | None, Query(
            alias="filter[tags]", description="Comma-separated: tokens with any of them")] = None,
        period: Annotated[str | None, Query(
            alias="filter[createdAt][period]", description="Created within, e.g. 1d")] = None,
        created_from: Annotated[str | None, Query(alias="filter[createdAt][from]")] = None,
        created_to: Annotated[str | None, Query(alias="filter[createdAt][to]")] = None,
    ) -> None:
        self.names = list(request.query_params.keys())
        self.page_size, self.page_after, self.page_before = page_size, page_after, page_before
        self.status, self.idempotency_key, self.tags = status, idempotency_key, tags
        self.period, self.created_from, self.created_to = period, created_from, created_to

    def parse(self) -> tuple[tokens.TokenFilter, int, str | None, str | None]:
        """The filter, page size and cursors; 400 naming the parameter it cannot use."""
        for name in self.names:
            if name.startswith(("filter[", "page[")) and name not in _LIST_PARAMETERS:
                raise InvalidInput(f"{name} is not a token-list parameter Reprise knows")
        for name, value in (("page[after]", self.page_after), ("page[before]", self.page_before),
                            ("filter[idempotencyKey]", self.idempotency_key),
                            ("filter[tags]", self.tags)):
            if value and "\x00" in value:
                raise InvalidInput(f"{name} must not contain U+0000")
        try:
            statuses = tokens.parse_statuses(self.status)
        except InvalidInput as exc:
            raise InvalidInput(f"filter[status]: {exc.message}") from None
        filters = tokens.TokenFilter(
            statuses=statuses,
            idempotency_key=self.idempotency_key or None,
            tags=_csv(self.tags),
            period=self.period or None,
            created_from=_moment(self.created_from, "filter[createdAt][from]"),
            created_to=_moment(self.created_to, "filter[createdAt][to]"),
        )
        return (filters, _page_size(self.page_size), self.page_after or None,
                self.page_before or None)


@router.post(PREFIX, summary="Create a waitpoint token (or, by idempotencyKey, get the one made)",
             response_description="{id, isCached, url}, and x-trigger-jwt to complete it")
def create_token(
    request: Request, auth: Caller, body: CreateBody, session: DbSession
) -> JSONResponse:
    created = tokens.create_token(
        session, auth, idempotency_key=body.idempotency_key,
        idempotency_key_ttl=body.idempotency_key_ttl, timeout=body.timeout, tags=body.tags,
    )
    token = created.token
    item = tokens.token_item(token, str(request.base_url))
    return JSONResponse(
        {"id": token.id, "isCached": created.is_cached, "url": item["url"]},
        headers={
            "x-trigger-jwt": create_public_token(auth, [f"write:waitpoints:{token.id}"]),
            "x-trigger-jwt-claims": json.dumps(token_claims(auth)),
        },
    )


async def _list_query(
    query: Annotated[TokenListQuery, Depends()], credential: BearerCredential
) -> tuple[tokens.TokenFilter, int, str | None, str | None]:
    try:
        return query.parse()
    except InvalidInput as exc:
        await credential.refuse(exc)


ListQuery = Annotated[
    tuple[tokens.TokenFilter, int, str | None, str | None], Depends(_list_query)
]


@router.get(PREFIX, summary="List the environment's waitpoint tokens, newest first, in pages",
            response_description="{data, pagination: {next?, previous?}}")
def list_tokens(
    request: Request, auth: Caller, query: ListQuery, session: DbSession
) -> JSONResponse:
    filters, size, after, before = query
    page = tokens.list_tokens(session, auth, filters, size=size, after=after, before=before)
    base = str(request.base_url)
    pagination = {key: value for key, value in
                  (("next", page.next), ("previous", page.previous)) if value is not None}
    return JSONResponse({
        "data": [tokens.token_item(token, base) for token in page.tokens],
        "pagination": pagination,
    })


@router.get(PREFIX + "/{waitpoint_id}",
            summary="Retrieve a waitpoint token (its output, a JSON string, once completed)")
def retrieve_token(
    request: Request, auth: Caller, waitpoint_id: str, session: DbSession
) -> JSONResponse:
    token = tokens.get_token(session, auth, _token_id(waitpoint_id))
    return JSONResponse(tokens.retrieved_token(token, str(request.base_url)))


@router.post(PREFIX + "/{waitpoint_id}/complete",
             summary="Complete a waitpoint token with data (the first completion's is kept)",
             response_description="{success: true}, also when it was completed before")
def complete_token(
    auth: WaitpointWriter, waitpoint_id: str, body: CompleteBody, session: DbSession
) -> JSONResponse:
    tokens.complete_token(session, auth, _token_id(waitpoint_id), body.data)
    return JSONResponse({"success": True})


def _token_id(value: str) -> str:
    if "\x00" in value:
        raise NotFound("Waitpoint not found")
    return value


class _BareConstant(ValueError):
    pass


def _bare_constant(name: str) -> Any:
    raise _BareConstant(name)


def _callback_data(raw: bytes) -> Any:
    """A callback's body as the token's data: any JSON value; as Trigger.dev, a body that
    is not JSON (none, a form, bare ``NaN`` or ``Infinity``, which JSON does not have) is
    ``{}``. JSON Postgres cannot store (a lone surrogate, U+0000) is a 400 naming where."""
    if not raw.strip():
        return {}
    try:
        return read_json(raw)
    except NotJson:
        return {}
    except UnstorableValue:
        try:
            json.loads(raw, parse_constant=_bare_constant)
        except _BareConstant:
            return {}
        raise


@router.post(PREFIX + "/{waitpoint_id}/callback/{callback_hash}",
             summary="A token's callback URL: no key; the JSON body becomes its data",
             response_description="{success: true}, also when it was completed before",
             openapi_extra={"security": []})
async def complete_by_callback(
    request: Request, waitpoint_id: str, callback_hash: str, session: DbSession
) -> JSONResponse:
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        raise LengthRequired("Content-Length header is required")
    if int(declared) > get_settings().max_body_bytes:
        raise TooLarge("Request body too large")
    raw = await request.body()

    def complete() -> None:
        # The token and its hash first (404, 401), then the body (parsed off the loop).
        token_id = _token_id(waitpoint_id)
        try:
            tokens.verify_callback(session, token_id, callback_hash)
            tokens.complete_by_callback(session, token_id, callback_hash, _callback_data(raw))
        except PermissionError as exc:
            raise Unauthorized(str(exc)) from None

    await run_in_threadpool(complete)
    return JSONResponse({"success": True})
