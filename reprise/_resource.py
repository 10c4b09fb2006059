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

import inspect
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


class Definition:
    """A resource method as written once: a generator function (``op`` of an operation,
    or returning a feed for a listing), bound on access to a sync or an async client."""

    listing: ClassVar[bool] = False

    def __init__(self, definition: Callable[..., Any]) -> None:
        self.definition = definition
        self.__doc__ = definition.__doc__
        self.name = definition.__name__
        self.qualname = definition.__qualname__
        signature = inspect.signature(definition)  # shown without self and generator type
        self.signature = signature.replace(
            parameters=list(signature.parameters.values())[1:],
            return_annotation=inspect.Signature.empty,
        )

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name, self.qualname = name, f"{owner.__qualname__}.{name}"

    def bind(self, resource: Resource[Any]) -> Callable[..., Any]:
        """This method of ``resource``: run on its client's transport (``await``-ed on an
        async one; a listing gives an iterator, or an async iterator)."""
        client, definition = resource._client, self.definition
        method: Callable[..., Any]
        if self.listing:

            def method(*args: Any, **kwargs: Any) -> Any:
                return client._engine().iterate(definition(resource, *args, **kwargs))

        elif client.is_async:

            async def method(*args: Any, **kwargs: Any) -> Any:
                return await client._engine().run(definition(resource, *args, **kwargs))

        else:

            def method(*args: Any, **kwargs: Any) -> Any:
                return client._engine().run(definition(resource, *args, **kwargs))

        method.__name__, method.__qualname__ = self.name, self.qualname
        method.__doc__, method.__module__ = self.__doc__, definition.__module__
        method.__signature__ = self.signature  # type: ignore[union-attr]
        return method


class Operation(Definition, Generic[P, T]):
    """A resource method written once as an operation: ``-> T`` on a sync client,
    ``async -> T`` on an async one."""

    def __init__(self, op: Callable[Concatenate[Any, P], Op[T]]) -> None:
        super().__init__(op)
        self.op = op

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Resource[Sync], owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, obj: Resource[Async], owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else self.bind(obj)


class Listing(Definition, Generic[P, T]):
    """A resource method written once as a feed: ``-> Iterator[T]`` on a sync client,
    ``-> AsyncIterator[T]`` on an async one (``async for``)."""

    listing = True

    def __init__(self, feed: Callable[Concatenate[Any, P], Feed[T]]) -> None:
        super().__init__(feed)
        self.feed = feed

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Resource[Sync], owner: type[Any]) -> Callable[P, Iterator[T]]: ...

    @overload
    def __get__(
        self, obj: Resource[Async], owner: type[Any]
    ) -> Callable[P, AsyncIterator[T]]: ...

    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else self.bind(obj)


class Overloaded(Definition, Generic[S, A]):
    """An :class:`Operation` whose signature is overloaded: ``S`` is its type on a sync
    client, ``A`` on an async one (a Protocol with the overloads, in both)."""

    def __init__(self, op: Callable[..., Op[Any]]) -> None:
        super().__init__(op)
        self.op = op

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Resource[Sync], owner: type[Any]) -> S: ...

    @overload
    def __get__(self, obj: Resource[Async], owner: type[Any]) -> A: ...

    def __get__(self, obj: Resource[Any] | None, owner: type[Any]) -> Any:
        return self if obj is None else self.bind(obj)


def definitions(resource: type[Resource[Any]]) -> dict[str, Definition]:
    """The API methods a resource class defines (each written once, for both clients)."""
    return {
        name: value
        for klass in reversed(resource.__mro__)
        for name, value in vars(klass).items()
        if isinstance(value, Definition)
    }
