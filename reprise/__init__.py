"""Reprise's public Python SDK.

Define tasks with :func:`task`; trigger and manage runs with :data:`tasks` and :data:`runs`,
queues and concurrency limits with :data:`queues` and :data:`concurrency_limits`, waitpoint
tokens with :data:`waitpoints`, after :func:`configure` (or the ``REPRISE_API_URL`` /
``REPRISE_API_KEY`` environment variables; ``TRIGGER_API_URL`` / ``TRIGGER_SECRET_KEY``
work too). :class:`AsyncClient` is the same API for asyncio (``await``, ``async for``).

The SDK is a client: it needs httpx and pydantic and imports nothing of the server
(``shared``, ``api``, ``workers``) nor any server library.
"""

from reprise.client import (
    ApiError,
    AsyncClient,
    Client,
    concurrency_limits,
    configure,
    queues,
    runs,
    schedules,
    tasks,
    waitpoints,
)
from reprise.context import AttemptInfo, RunInfo, TaskContext
from reprise.registry import (
    Concurrency,
    ConcurrencyLimit,
    TaskDefinition,
    concurrency_limit,
    task,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "AttemptInfo",
    "Client",
    "Concurrency",
    "ConcurrencyLimit",
    "RunInfo",
    "TaskContext",
    "TaskDefinition",
    "concurrency_limit",
    "concurrency_limits",
    "configure",
    "queues",
    "runs",
    "schedules",
    "task",
    "tasks",
    "waitpoints",
]
