"""The HTTP edge: the session, the caller, the run id, the body and the headers, as typed
dependencies. Routes call the domain with what these return; no header, bearer secret or
raw query syntax goes further.

Errors come in the order 401, then 400, then 404: input checks refuse through the request's
:class:`Credential`, which verifies the key first. See docs/architecture.md#the-http-edge.
"""

from __future__ import annotations

import functools
import inspect
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Generic, NoReturn, TypeVar

import anyio.to_thread
from anyio import CancelScope, CapacityLimiter
from fastapi import Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_signature
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from reprise_server.api.validation import validation_message
from reprise_server.shared.access.repository import RunHead
from reprise_server.shared.access.service import authenticate_for_run
from reprise_server.shared.commands.errors import InvalidRequestBody
from reprise_server.shared.db import commit, has_pending_work, transaction
from reprise_server.shared.errors import (
    BadRequest,
    Forbidden,
    InvalidInput,
    InvalidRunId,
    RepriseError,
    TooLarge,
)
from reprise_server.shared.ids import is_run_id
from reprise_server.shared.payloads import NotJson, read_json
from reprise_server.shared.projects.service import (
    AuthContext,
    authenticate,
    cached_caller,
    spend_public_token,
)
from reprise_server.shared.projects.tokens import authenticate_public_token
from reprise_server.shared.runs.schemas import TriggerRequest
from reprise_server.shared.runs.service import retried_trigger

M = TypeVar("M", bound=BaseModel)


async def db_session() -> AsyncIterator[Session]:
    """The request's one transaction (:func:`shared.db.transaction`): committed, then its
    after-commit callbacks run, when the route returns; rolled back if anything raised.

    Entered on the event loop (a new session opens no connection until its first
    statement); the commit or rollback runs in a worker thread, shielded from the
    client going away, with a limiter of its own, as FastAPI does for sync generators:
    a request holding a pooled connection never waits for a thread that is itself
    waiting for a connection.
    """
    unit = transaction()
    session = unit.__enter__()
    try:
        yield session
    except BaseException as exc:
        with CancelScope(shield=True):
            handled = await anyio.to_thread.run_sync(
                unit.__exit__, type(exc), exc, exc.__traceback__, limiter=CapacityLimiter(1)
            )
        if not handled:
            raise
    else:
        if not has_pending_work(session):
            # The route committed in its own thread (EdgeRoute): closing does no I/O.
            unit.__exit__(None, None, None)
            return
        with CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                unit.__exit__, None, None, None, limiter=CapacityLimiter(1)
            )


# scope="function": the transaction ends as the route returns, before the response is
# sent, so a client that got its 2xx reads its write in its next request (read-your-writes), and a
# failed commit is still answered with an error rather than a 2xx already sent.
DbSession = Annotated[Session, Depends(db_session, scope="function")]


@lru_cache(maxsize=1)
def _api_applier(pid: int) -> str:
    return f"api:{socket.gethostname()}:{pid}"


def api_applier() -> str:
    """The ``applied_by`` of commands an API process applies (per pid: uvicorn forks)."""
    return _api_applier(os.getpid())


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _is_public_token(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("tr_")


class Credential:
    """The request's bearer credential, verified at most once per request."""

    def __init__(self, token: str | None, session: Session) -> None:
        self._token = token
        self._session = session
        self.auth: AuthContext | None = None
        self.verified = False

    def verify(self, *, allow_public: bool = False) -> AuthContext:
        """The caller: the environment of a secret key or, with ``allow_public`` (reads), of
        a public access token; anything else (a JWT on a write route included) is 401."""
        if self.auth is None or (self.auth.is_public and not allow_public):
            if allow_public and self._token and _is_public_token(self._token):
                self.auth = authenticate_public_token(self._session, self._token)
            else:
                self.auth = authenticate(self._session, self._token)
            self.verified = True
        return self.auth

    @property
    def secret_key(self) -> str | None:
        """The bearer secret key, once verified as one (None for a public token)."""
        if self.auth is None or self.auth.is_public:
            return None
        return self._token

    def cached(self) -> AuthContext | None:
        """The caller, if its secret key was verified within the key cache's window."""
        auth = cached_caller(self._token)
        if auth is not None:
            self.auth, self.verified = auth, True
        return auth

    def with_run(self, run_id: str, *, lock: bool = False) -> tuple[AuthContext, RunHead]:
        """The caller (secret keys only) and a run of its environment in one round trip:
        the accept path of replay and reschedule. 401 for a wrong key, then 404."""
        try:
            self.auth, run = authenticate_for_run(self._session, self._token, run_id, lock=lock)
        finally:
            self.verified = True  # also on the way to a 401 or a 404
        return self.auth, run

    async def refuse(self, error: RepriseError) -> NoReturn:
        """Raise ``error`` (a bad request input), unless the key is wrong: then 401, which
        wins over whatever else is wrong with the request."""
        if not self.verified:
            await run_in_threadpool(self.verify)
        raise error


async def _credential(request: Request, session: DbSession) -> Credential:
    return Credential(_bearer(request), session)


# Every dependency that checks request input depends on this, and raises through
# :meth:`Credential.refuse`.
BearerCredential = Annotated[Credential, Depends(_credential)]


async def _secret_key_caller(credential: BearerCredential) -> AuthContext:
    # A key verified moments ago needs no query, so no trip to a worker thread either.
    cached = credential.cached()
    if cached is not None:
        return cached
    return await run_in_threadpool(credential.verify)


async def _reading_caller(credential: BearerCredential) -> AuthContext:
    cached = credential.cached()
    if cached is not None:
        return cached
    return await run_in_threadpool(credential.verify, allow_public=True)


# The caller of a route that needs a secret key.
Caller = Annotated[AuthContext, Depends(_secret_key_caller)]
# The caller of a read that a public access token (JWT) may also make; the route's
# read checks the token's scopes against what it reads (404 for what they do not name).
Reader = Annotated[AuthContext, Depends(_reading_caller)]


async def _public_write_caller(
    action: str, task_id: str, credential: Credential, session: Session,
    request_key: str | None,
) -> AuthContext:
    """The caller of a write a public token may make if one of its scopes grants
    ``<action>:tasks[:<task id>]`` (403 otherwise); a one-time-use token (``otu``) is
    spent by the request's transaction, and refused (401) once spent."""
    auth = credential.cached()
    if auth is None:
        auth = await run_in_threadpool(credential.verify, allow_public=True)
    if auth.access is not None:
        if not auth.access.allows(action, "tasks", [task_id]):
            raise Forbidden(f"this public access token may not {action} task {task_id!r}")
        if auth.access.one_time_use:
            await run_in_threadpool(_spend_unless_retried, session, auth, task_id, request_key)
    return auth


def _spend_unless_retried(
    session: Session, auth: AuthContext, task_id: str, request_key: str | None
) -> None:
    """Spend a one-time token, unless this request is the SDK retrying the trigger that
    spent it (same per-request key, same task): that retry gets the run it created."""
    assert auth.access is not None
    if retried_trigger(session, auth, task_id, request_key) is None:
        spend_public_token(session, auth.access)


@dataclass(frozen=True)
class TriggerCall:
    """``POST /api/v1/tasks/{task_id}/trigger``, checked: the task id, the caller (a secret
    key, or a public token with ``trigger:tasks:<task id>``: ``auth.createTriggerPublicToken``),
    the body (400 naming the field; no body is a trigger with no payload or options) and
    the SDK's per-request key."""

    task_id: str
    auth: AuthContext
    body: TriggerRequest
    request_key: str | None


async def _trigger_call(
    task_id: Annotated[str, Path()], request: Request, session: DbSession,
    request_key: RequestKey = None,
) -> TriggerCall:
    # One dependency where the caller and the body were three (credential, caller, body):
    # FastAPI's solving of each costs about as much as the checks themselves, on the
    # busiest route. The order is the same: 401, 403 (and a one-time token spent), 400.
    credential = Credential(_bearer(request), session)
    auth = await _public_write_caller("trigger", task_id, credential, session, request_key)
    body = await _read_body(
        request, credential, TriggerRequest, InvalidInput, required=False, max_bytes=None
    )
    return TriggerCall(task_id, auth, body, request_key)


TaskTrigger = Annotated[TriggerCall, Depends(_trigger_call)]


async def _waitpoint_writer(
    waitpoint_id: Annotated[str, Path()], credential: BearerCredential
) -> AuthContext:
    """The caller of a token's completion: a secret key, or a public token whose scopes
    grant ``write:waitpoints[:<id>]`` (the ``x-trigger-jwt`` of its creation), else 403."""
    auth = credential.cached()
    if auth is None:
        auth = await run_in_threadpool(credential.verify, allow_public=True)
    if auth.access is not None and not auth.access.allows("write", "waitpoints", [waitpoint_id]):
        raise Forbidden(f"this public access token may not complete waitpoint {waitpoint_id!r}")
    return auth


# The caller of ``POST /api/v1/waitpoints/tokens/{waitpoint_id}/complete``.
WaitpointWriter = Annotated[AuthContext, Depends(_waitpoint_writer)]


async def _realtime_caller(request: Request) -> AuthContext:
    """A :data:`Reader` whose verification uses a short transaction of its own: a realtime
    long-poll must not hold a pooled connection (or a transaction) while it waits."""
    token = _bearer(request)
    cached = cached_caller(token)
    if cached is not None:
        return cached

    def verify() -> AuthContext:
        with transaction() as session:
            return Credential(token, session).verify(allow_public=True)

    return await run_in_threadpool(verify)


RealtimeReader = Annotated[AuthContext, Depends(_realtime_caller)]


async def _run_id(run_id: Annotated[str, Path()], credential: BearerCredential) -> str:
    if not is_run_id(run_id):
        await credential.refuse(InvalidRunId())
    return run_id


# The ``{run_id}`` of the path, of the ``run_`` form (else 400 "Invalid or missing run ID").
RunId = Annotated[str, Depends(_run_id)]

# Offset pages (``?page=&perPage=``, the SDK's ``zodfetchOffsetLimitPage``): schedules,
# queues and concurrency limits.
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100


def _whole_number(value: str | None, name: str, default: int, maximum: int | None) -> int:
    if value is None or value == "":
        return default
    top = f" to {maximum}" if maximum is not None else ""
    if not value.isdigit() or int(value) < 1 or (maximum is not None and int(value) > maximum):
        raise BadRequest(f"{name} must be a whole number from 1{top}")
    return int(value)


async def _offset_page(
    credential: BearerCredential,
    page: Annotated[str | None, Query(description="From 1")] = None,
    per_page: Annotated[
        str | None, Query(alias="perPage", description=f"1 to {MAX_PER_PAGE} ({DEFAULT_PER_PAGE})")
    ] = None,
) -> tuple[int, int]:
    try:
        return (
            _whole_number(page, "page", 1, None),
            _whole_number(per_page, "perPage", DEFAULT_PER_PAGE, MAX_PER_PAGE),
        )
    except BadRequest as exc:
        await credential.refuse(exc)


# ``(page, per_page)``: 400 naming the parameter for anything but a whole number in range.
OffsetPage = Annotated[tuple[int, int], Depends(_offset_page)]


def offset_page_to_wire(
    items: list[dict[str, Any]], count: int, page: int, per_page: int
) -> dict[str, Any]:
    """``{data, pagination: {currentPage, totalPages, count}}``."""
    return {
        "data": items,
        "pagination": {
            "currentPage": page,
            "totalPages": max(1, -(-count // per_page)),
            "count": count,
        },
    }


ApiVersion = Annotated[str | None, Header(alias="x-trigger-api-version")]
# The SDK's per-request idempotency key, the same on its own retries.
RequestKey = Annotated[str | None, Header(alias="x-trigger-request-idempotency-key")]


def _parse(
    model: type[M], raw: bytes, error: Callable[[str], RepriseError], *, required: bool
) -> M:
    if not raw.strip():
        if required:
            raise error("the request body is missing")
        data: Any = {}
    else:
        try:
            data = read_json(raw)
        except NotJson as exc:
            raise InvalidRequestBody(exc.message) from None
    if not isinstance(data, dict):
        raise error("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(validation_message(exc)) from None


# The OpenAPI request body of each json_body dependency, documented by EdgeRoute.
_REQUEST_BODIES: dict[Callable[..., Any], dict[str, Any]] = {}


def json_body(
    model: type[M], *, error: Callable[[str], RepriseError], required: bool = True,
    max_bytes: int | None = None,
) -> Any:
    """A dependency: the request's JSON body validated as ``model``.

    Malformed JSON is 400 "Invalid request body: not JSON: …"; values JSON or Postgres
    cannot carry (NaN, Infinity, a lone surrogate, U+0000) and fields nested too deep are
    400s naming where (:func:`shared.payloads.read_json`). A missing body where
    ``required``, a body that is not an object (``null`` included) or not of the model's
    shape is the route's documented ``error``, built from a sentence saying why. Without
    ``required`` an empty body is ``{}``. A body over ``max_bytes`` (by its Content-Length,
    or as read) is 413 "Request body too large". The model's schema documents the route's
    request body.
    """

    async def parse_body(request: Request, credential: BearerCredential) -> M:
        return await _read_body(
            request, credential, model, error, required=required, max_bytes=max_bytes
        )

    _REQUEST_BODIES[parse_body] = _request_body(model, required=required)
    return Depends(parse_body)


async def _read_body(
    request: Request, credential: Credential, model: type[M],
    error: Callable[[str], RepriseError], *, required: bool, max_bytes: int | None,
) -> M:
    """The body of :func:`json_body`, for a dependency that reads it among other checks."""
    too_large = TooLarge("Request body too large")
    declared = request.headers.get("content-length", "")
    if max_bytes is not None and declared.isdigit() and int(declared) > max_bytes:
        await credential.refuse(too_large)
    raw = await request.body()
    try:
        if max_bytes is not None and len(raw) > max_bytes:
            raise too_large
        return _parse(model, raw, error, required=required)
    except RepriseError as exc:
        await credential.refuse(exc)


def _request_body(model: type[BaseModel], *, required: bool) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": _inline_schema(model)}},
    }


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` inlined (an operation's schema cannot
    point into a ``$defs`` of its own)."""
    schema = model.model_json_schema(by_alias=True)
    defs: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            rest = {key: inline(value) for key, value in node.items() if key != "$ref"}
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return {**inline(defs[ref.removeprefix("#/$defs/")]), **rest}
            return node if ref is not None else rest
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return dict(inline(schema))


_REQUEST_BODIES[_trigger_call] = _request_body(TriggerRequest, required=False)


@dataclass(frozen=True)
class RunWrite(Generic[M]):
    """A write on ``/api/v1/runs/{run_id}/…`` (replay, reschedule), its input checked: the
    run id, the body, and the request's credential, for the route to verify together with
    its read of the run (:meth:`Credential.with_run`, one round trip)."""

    run_id: str
    credential: Credential
    body: M


def run_write(model: type[M], *, required: bool) -> Any:
    """A dependency: the :class:`RunWrite` of the request — the path's run id (400 "Invalid
    or missing run ID" unless of the ``run_`` form), then its JSON body as
    :func:`json_body` reads it (400 "Invalid request body: …"); a wrong key is 401 before
    either. One dependency where there were four (run id, body, credential, session), as
    the trigger has (:data:`TaskTrigger`): FastAPI's solving of each costs about what the
    checks do."""

    async def run_write_call(
        run_id: Annotated[str, Path()], request: Request, session: DbSession
    ) -> RunWrite[M]:
        credential = Credential(_bearer(request), session)
        if not is_run_id(run_id):
            await credential.refuse(InvalidRunId())
        body = await _read_body(
            request, credential, model, InvalidRequestBody, required=required, max_bytes=None
        )
        return RunWrite(run_id, credential, body)

    _REQUEST_BODIES[run_write_call] = _request_body(model, required=required)
    return Depends(run_write_call)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def _session_parameters(endpoint: Callable[..., Any]) -> list[str]:
    """The endpoint's parameters that are the request's :data:`DbSession`."""
    names = []
    for param in get_typed_signature(endpoint).parameters.values():
        for meta in getattr(param.annotation, "__metadata__", ()):
            if getattr(meta, "dependency", None) is db_session:
                names.append(param.name)
    return names


def _committing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A sync endpoint taking the request's session, which commits it (and publishes what
    waits for the commit) in the thread it already runs in, as it returns: one trip to a
    worker thread per request instead of two. Errors, and async endpoints, are left to
    :func:`db_session` as before."""
    names = _session_parameters(endpoint)
    if not names or inspect.iscoroutinefunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)
    def run_and_commit(*args: Any, **kwargs: Any) -> Any:
        response = endpoint(*args, **kwargs)
        commit(kwargs[names[0]])
        return response

    return run_and_commit


class EdgeRoute(APIRoute):
    """A route whose :func:`json_body` dependency documents its request body in OpenAPI
    (the route reads the body itself, so FastAPI has no body field to document), and
    whose sync endpoint commits the request's transaction itself (:func:`_committing`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _committing(endpoint), **kwargs)
        for dependant in _dependants(self.dependant):
            body = _REQUEST_BODIES.get(dependant.call) if dependant.call else None
            if body is not None:
                self.openapi_extra = {"requestBody": body, **(self.openapi_extra or {})}
