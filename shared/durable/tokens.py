"""Waitpoint tokens: a waitpoint someone completes (a person approving, a webhook), with
Trigger.dev's wire (``@trigger.dev/core``'s ``CreateWaitpointTokenRequestBody``,
``WaitpointTokenItem``, ``WaitpointRetrieveTokenResponse``).

A token is created by the API (or the SDKs), waited for by runs (``ctx.wait_for_token``),
and completed by the API, its callback URL or the dashboard; an optional timeout completes
it as TIMED_OUT (the same timers as a time wait). Completing one queues every run waiting
on it (shared.durable.service.complete_waitpoint). Services take the caller's session and
never commit.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from reprise_server.shared import idempotency
from reprise_server.shared.db import db_now
from reprise_server.shared.durable import service as durable
from reprise_server.shared.durable import waits
from reprise_server.shared.durable.models import Waitpoint
from reprise_server.shared.durations import (
    DelayPolicy,
    DurationError,
    iso,
    parse_delay,
    parse_duration,
)
from reprise_server.shared.errors import InvalidInput, NotFound, Unprocessable
from reprise_server.shared.ids import new_id
from reprise_server.shared.payloads import reject_unstorable
from reprise_server.shared.projects.service import AuthContext

MAX_TAGS = 10
MAX_TAG_LENGTH = 128
STATUSES = ("WAITING", "COMPLETED", "TIMED_OUT")
# The error a timed-out token's output is (``@trigger.dev/core``'s ``timeoutError``): the
# official SDK's ``wait.retrieveToken`` reads its ``message`` into a WaitpointTimeoutError.
TIMEOUT_ERROR_CODE = "TRIGGER_WAITPOINT_TIMEOUT"
# A token's timeout: a duration ("30s", "1h") or a date; a date in the past times it out
# at once.
TIMEOUT = DelayPolicy(numbers=False, past="now")
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class CreatedToken:
    token: Waitpoint
    is_cached: bool


def _tags(tags: str | list[str] | None) -> list[str]:
    listed = [tags] if isinstance(tags, str) else list(tags or [])
    if len(listed) > MAX_TAGS:
        raise Unprocessable(  # 422, as Trigger.dev answers it
            f"Waitpoints can only have {MAX_TAGS} tags, you're trying to set {len(listed)}."
        )
    for tag in listed:
        if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG_LENGTH:
            raise InvalidInput(f"tags: each tag is 1 to {MAX_TAG_LENGTH} characters")
    return sorted(set(listed))


def create_token(
    session: Session, auth: AuthContext, *, idempotency_key: str | None = None,
    idempotency_key_ttl: str | None = None, timeout: str | datetime | None = None,
    tags: str | list[str] | None = None,
) -> CreatedToken:
    """A new WAITING token, or (``idempotency_key`` still live in the environment) the one
    created with that key before, ``is_cached``. A key past its TTL is released: the new
    token takes it."""
    now = db_now(session)
    listed = _tags(tags)
    if idempotency_key_ttl is not None and not idempotency_key:
        raise InvalidInput("idempotencyKeyTTL needs an idempotencyKey")
    expires = (
        idempotency.key_expiry(now, idempotency_key_ttl, "idempotencyKeyTTL")
        if idempotency_key else None
    )
    due: datetime | None = None
    if timeout is not None:
        try:
            due = timeout if isinstance(timeout, datetime) else parse_delay(timeout, now, TIMEOUT)
        except DurationError as exc:
            raise InvalidInput(f"timeout: {exc}") from None
    if idempotency_key:
        held = session.scalars(
            select(Waitpoint).where(Waitpoint.environment_id == auth.environment_id,
                                    Waitpoint.idempotency_key == idempotency_key)
            .with_for_update()
        ).first()
        if held is not None:
            if held.idempotency_key_expires_at is None or held.idempotency_key_expires_at > now:
                return CreatedToken(held, is_cached=True)
            held.idempotency_key = None  # expired: the key moves to the new token
            session.flush()
    token_id = new_id("waitpoint")
    inserted = session.execute(
        pg_insert(Waitpoint).values(
            id=token_id, project_id=auth.project_id, environment_id=auth.environment_id,
            type=waits.TOKEN, status=waits.WAITING, complete_after=due,
            idempotency_key=idempotency_key or None, idempotency_key_expires_at=expires,
            tags=listed, output_is_error=False, callback_hash=durable.callback_hash(token_id),
            timer_armed=False,
        ).on_conflict_do_nothing().returning(Waitpoint.id)
    ).first()
    if inserted is None:  # a concurrent create took the key first: its token is the answer
        held = session.scalars(select(Waitpoint).where(
            Waitpoint.environment_id == auth.environment_id,
            Waitpoint.idempotency_key == idempotency_key)).one()
        return CreatedToken(held, is_cached=True)
    if due is not None:
        durable.arm_if_due_soon(session, token_id, due, now)
    token = session.get(Waitpoint, token_id)
    assert token is not None
    return CreatedToken(token, is_cached=False)


def get_token(session: Session, auth: AuthContext, token_id: str) -> Waitpoint:
    token = session.get(Waitpoint, token_id)
    if token is None or token.environment_id != auth.environment_id or token.type != waits.TOKEN:
        raise NotFound("Waitpoint not found")
    return token


def complete_token(session: Session, auth: AuthContext, token_id: str, data: Any) -> bool:
    """Complete the caller's token with ``data`` (queueing the runs waiting on it); False
    if it was completed (or timed out) before: it keeps what it had."""
    get_token(session, auth, token_id)
    reject_unstorable(data, "data")
    return durable.complete_waitpoint(session, token_id, data)


def verify_callback(session: Session, token_id: str, hash_: str) -> Waitpoint:
    """The token a callback URL names, if its hash is right (checked in constant time).
    Raises NotFound for no such token, PermissionError for a wrong hash."""
    token = session.get(Waitpoint, token_id)
    if token is None or token.type != waits.TOKEN:
        raise NotFound("Waitpoint not found")
    if not hmac.compare_digest(durable.callback_hash(token_id), hash_):
        raise PermissionError("Invalid URL, hash doesn't match")
    return token


def complete_by_callback(session: Session, token_id: str, hash_: str, data: Any) -> bool:
    """The callback URL: no key, the hash in the path is the proof
    (:func:`verify_callback`); False if it was completed before."""
    verify_callback(session, token_id, hash_)
    reject_unstorable(data, "body")
    return durable.complete_waitpoint(session, token_id, data)


def callback_path(token: Waitpoint) -> str:
    return f"api/v1/waitpoints/tokens/{token.id}/callback/{durable.callback_hash(token.id)}"


def token_item(token: Waitpoint, base_url: str) -> dict[str, Any]:
    """``WaitpointTokenItem`` (absent optional fields omitted, never null)."""
    item: dict[str, Any] = {
        "id": token.id,
        "url": base_url.rstrip("/") + "/" + callback_path(token),
        "status": token.status,
        "tags": list(token.tags or []),
        "createdAt": iso(token.created_at),
    }
    optional = {
        "completedAt": iso(token.completed_at),
        "timeoutAt": iso(token.complete_after),
        "idempotencyKey": token.idempotency_key,
        "idempotencyKeyExpiresAt": iso(token.idempotency_key_expires_at),
    }
    item.update({key: value for key, value in optional.items() if value is not None})
    return item


def retrieved_token(token: Waitpoint, base_url: str) -> dict[str, Any]:
    """``WaitpointRetrieveTokenResponse``: the item with its output (a JSON string, as
    Trigger.dev stores a packet) once completed."""
    item = token_item(token, base_url)
    if token.status == waits.COMPLETED:
        item["output"] = json.dumps(token.output)
        item["outputType"] = "application/json"
        item["outputIsError"] = False
    elif token.status == waits.TIMED_OUT:
        # Without an output the official SDK fails reading the error's message.
        item["output"] = json.dumps(timeout_error(token))
        item["outputType"] = "application/json"
        item["outputIsError"] = True
    return item


def timeout_error(token: Waitpoint) -> dict[str, str]:
    """What a timed-out token's output reads (``{code, message}``)."""
    at = iso(token.complete_after or token.completed_at) or "its timeout"
    return {"code": TIMEOUT_ERROR_CODE, "message": f"Waitpoint timed out at {at}"}


@dataclass(frozen=True)
class TokenFilter:
    statuses: list[str] | None = None
    idempotency_key: str | None = None
    tags: list[str] | None = None
    period: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True)
class TokenPage:
    tokens: list[Waitpoint]
    next: str | None
    previous: str | None


def parse_statuses(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    statuses = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise InvalidInput(f"Invalid status values: {', '.join(bad)}")
    return list(dict.fromkeys(statuses))


def list_tokens(
    session: Session, auth: AuthContext, filters: TokenFilter, *, size: int = DEFAULT_PAGE_SIZE,
    after: str | None = None, before: str | None = None,
) -> TokenPage:
    """The environment's tokens newest first, a page at a time (cursors are token ids)."""
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page[size] must be between 1 and {MAX_PAGE_SIZE}")
    query = select(Waitpoint).where(Waitpoint.environment_id == auth.environment_id,
                                    Waitpoint.type == waits.TOKEN)
    if filters.statuses:
        query = query.where(Waitpoint.status.in_(filters.statuses))
    if filters.idempotency_key:
        query = query.where(Waitpoint.idempotency_key == filters.idempotency_key)
    if filters.tags:
        query = query.where(Waitpoint.tags.overlap(filters.tags))
    if filters.period:
        try:
            seconds = parse_duration(filters.period)
        except DurationError as exc:
            raise InvalidInput(f"filter[createdAt][period]: {exc}") from None
        query = query.where(Waitpoint.created_at >= func.now() - timedelta(seconds=seconds))
    if filters.created_from:
        query = query.where(Waitpoint.created_at >= filters.created_from)
    if filters.created_to:
        query = query.where(Waitpoint.created_at <= filters.created_to)
    backward = before is not None and after is None
    cursor_id = after or before
    if cursor_id:
        anchor = session.execute(select(Waitpoint.created_at, Waitpoint.id).where(
            Waitpoint.id == cursor_id, Waitpoint.environment_id == auth.environment_id)).first()
        if anchor is None:
            raise InvalidInput("page cursor is not a token of this environment")
        at, anchor_id = anchor
        older = or_(Waitpoint.created_at < at, and_(Waitpoint.created_at == at,
                                                     Waitpoint.id < anchor_id))
        newer = or_(Waitpoint.created_at > at, and_(Waitpoint.created_at == at,
                                                     Waitpoint.id > anchor_id))
        query = query.where(newer if backward else older)
    order = (Waitpoint.created_at.asc(), Waitpoint.id.asc()) if backward else (
        Waitpoint.created_at.desc(), Waitpoint.id.desc())
    rows = list(session.scalars(query.order_by(*order).limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
    next_cursor = rows[-1].id if rows and (more or backward) else None
    previous_cursor = rows[0].id if rows and (cursor_id is not None and (not backward or more)) else None
    return TokenPage(rows, next_cursor, previous_cursor)
