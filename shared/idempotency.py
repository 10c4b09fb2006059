"""Idempotency of the requests that create something — a trigger, a batch, a replay: the
user's idempotency key (stored hashed, :func:`hash_key`, until :func:`key_expiry`), the
SDK's per-request key (:func:`request_key`) with its one window, and
:func:`insert_or_winner`, the one shape of a keyed create.

The policy and why: docs/architecture.md#idempotency.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from reprise_server.shared.durations import DurationError, parse_duration
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.settings import get_settings

REQUEST_KEY_LENGTH = 128
# How long an idempotency key deduplicates when no idempotencyKeyTTL is given
# (Trigger.dev's default).
DEFAULT_KEY_TTL = timedelta(days=30)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class KeyTaken(Exception):
    """An insert found one of its keys already held by another row (its unique index)."""


class Accepted(Protocol):
    """A row a request key may name: when it was accepted, by the database clock."""

    @property
    def created_at(self) -> datetime: ...


T = TypeVar("T")
A = TypeVar("A", bound=Accepted)


def hash_key(key: str) -> str:
    """The SDK sends SHA-256 hex already; anything else (curl, other clients) is hashed here."""
    if _SHA256_HEX.fullmatch(key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def request_key(raw: str | None) -> str | None:
    """The request key as stored (None for none)."""
    return raw[:REQUEST_KEY_LENGTH] if raw else None


def key_expiry(now: datetime, ttl: str | None, field: str = "options.idempotencyKeyTTL") -> datetime:
    """When a key given at ``now`` stops deduplicating: ``idempotencyKeyTTL`` (a duration
    such as ``10s``, ``5m``, ``1h``, ``7d``) from now, else 30 days."""
    if ttl is None:
        return now + DEFAULT_KEY_TTL
    try:
        seconds = parse_duration(ttl)
    except DurationError:
        raise InvalidInput(
            f"{field} must be a duration such as 30s, 10m, 1h or 7d, got {ttl!r}"
        ) from None
    if seconds <= 0:
        raise InvalidInput(f"{field} must be positive, got {ttl!r}")
    return now + timedelta(seconds=seconds)


def request_key_window() -> timedelta:
    return timedelta(hours=get_settings().request_idempotency_hours)


def is_retry(accepted_at: datetime, now: datetime) -> bool:
    """Whether a request whose key was accepted at ``accepted_at`` is still answered for
    a retry at ``now`` (both by the database clock): the window policy above."""
    return now - accepted_at < request_key_window()


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What a keyed request answers: ``row``, created by this request (``new``) or by an
    earlier one; ``cached`` when found by its idempotency key (Trigger.dev's ``isCached``),
    ``raced`` when found only after this request's insert lost to it."""

    row: T
    new: bool = False
    cached: bool = False
    raced: bool = False


Finder = Callable[[], Answer[T] | None]


def retry_of(
    held: A | None, now: Callable[[], datetime], release: Callable[[A], None] | None = None
) -> Answer[A] | None:
    """The answer to a retry: ``held`` (the row the request key names) if still within
    the window, else None, after ``release`` gave the key up."""
    if held is None:
        return None
    if is_retry(held.created_at, now()):
        return Answer(held)
    if release is not None:
        release(held)
    return None


def holder(held: T | None) -> Answer[T] | None:
    """The answer of an idempotency key's live holder (``cached``)."""
    return Answer(held, cached=True) if held is not None else None


def first_answer(finders: Sequence[Finder[T]]) -> Answer[T] | None:
    for find in finders:
        found = find()
        if found is not None:
            return found
    return None


def insert_or_winner(insert: Callable[[], T], finders: Sequence[Finder[T]]) -> Answer[T]:
    """An earlier request's answer (the first of ``finders`` that has one), else ``insert()``
    (``new``); if the insert raises :class:`KeyTaken`, the concurrent request that took the
    key first is the answer (``raced``)."""
    earlier = first_answer(finders)
    if earlier is not None:
        return earlier
    try:
        return Answer(insert(), new=True)
    except KeyTaken:
        winner = first_answer(finders)
        if winner is None:
            raise
        return Answer(winner.row, cached=winner.cached, raced=True)
