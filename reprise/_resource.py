"""One definition of each resource method for both clients.

A resource class (``Runs``, ``Queues``…) is generic in its mode, :class:`Sync` or
:class:`Async`, and its methods are generators (see :mod:`reprise._sansio`) wrapped in
:class:`Operation` or :class:`Listing`. Read from a resource of a
:class:`~reprise.client.Client`, such a method runs on its transport and returns the
result (or an iterator); from a resource of an :class:`~reprise.client.AsyncClient`, it is
a coroutine function (or returns an async iterator). The types follow::

    Client().runs.retrieve         # (run_id: str) -> Run
    AsyncClient().runs.retrieve    # (run_id: str) -> Coroutine[Any, Any, Run]
    AsyncClient().runs.list        # (...) -> AsyncIterator[RunListItem]
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    ParamSpec,
    Self,
    TypeVar,
    overload,
)

from reprise._sansio import Feed, Op

if TYPE_CHECKING:
    from reprise.transport import AsyncTransport, Transport

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")
A = TypeVar("A")


class Sync:
    """The mode of a resource bound to a :class:`~reprise.client.Client`."""


class Async:
    """The mode of a resource bound to an :class:`~reprise.client.AsyncClient`."""


M = TypeVar("M", Sync, Async)


class Connection(Generic[M]):
    """What resources are bound to: a client, which gives the transport running them."""

    is_async: ClassVar[bool] = False

    def _engine(self) -> Transport | AsyncTransport:
        raise NotImplementedError


class Resource(Generic[M]):
    """A namespace of API methods (``client.runs``…), bound to a client."""

    def __init__(self, client: Connection[M]) -> None:
        self._client: Connection[M] = client


def _named(function: Callable[..., Any], source: Callable[..., Any]) -> Callable[..., Any]:
    function.__name__ = source.__name__
    function.__qualname__ = source.__qualname__
    function.__doc__ = source.__doc__
    function.__module__ = source.__module__
    return function


def _bind_op(resource: Resource[Any], op: Callable[..., Op[Any]]) -> Callable[..., Any]:
    client = resource._client
    if client.is_async:

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await client._engine().run(op(resource, *args, **kwargs))

        return _named(run_async, op)

    def run(*args: Any, **kwargs: Any) -> Any:
        return client._engine().run(op(resource, *args, **kwargs))

    return _named(run, op)


def _bind_feed(resource: Resource[Any], feed: Callable[..., Feed[Any]]) -> Callable[..., Any]:
    client = resource._client

    def iterate(*args: Any, **kwargs: Any) -> Any:
        return client._engine().iterate(feed(resource, *args, **kwargs))

    return _named(iterate, feed)


class Operation(Generic[P, T]):
    """A resource method written once as an operation: ``-> T`` on a sync client,
    ``async -> T`` on an async one."""

    def __init__(self, op: Callable[Concatenate[Any, P], Op[T]]) -> None:
        self.op = op
        self.__doc__ = op.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Resource[Sync], owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, obj: Resource[Async], owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else _bind_op(obj, self.op)


class Listing(Generic[P, T]):
    """A resource method written once as a feed: ``-> Iterator[T]`` on a sync client,
    ``-> AsyncIterator[T]`` on an async one (``async for``)."""

    def __init__(self, feed: Callable[Concatenate[Any, P], Feed[T]]) -> None:
        self.feed = feed
        self.__doc__ = feed.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Resource[Sync], owner: type[Any]) -> Callable[P, Iterator[T]]: ...

    @overload
    def __get__(
        self, obj: Resource[Async], owner: type[Any]
    ) -> Callable[P, AsyncIterator[T]]: ...

    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else _bind_feed(obj, self.feed)


class Overloaded(Generic[S, A]):
    """An :class:`Operation` whose signature is overloaded: ``S`` is its type on a sync
    client, ``A`` on an async one (a Protocol with the overloads, in both)."""

    def __init__(self, op: Callable[..., Op[Any]]) -> None:
        self.op = op
        self.__doc__ = op.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Resource[Sync], owner: type[Any]) -> S: ...

    @overload
    def __get__(self, obj: Resource[Async], owner: type[Any]) -> A: ...

    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else _bind_op(obj, self.op)


def definitions(resource: type[Resource[Any]]) -> dict[str, Operation[Any, Any] | Listing[Any, Any] | Overloaded[Any, Any]]:
    """The API methods a resource class defines (each written once, for both clients)."""
    return {
        name: value
        for klass in reversed(resource.__mro__)
        for name, value in vars(klass).items()
        if isinstance(value, Operation | Listing | Overloaded)
    }
