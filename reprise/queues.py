"""``reprise.queues``: the queues runs wait in, over the API, as ``queues.*`` of
Trigger.dev's SDK.

A queue is named by its id (``queue_…``), a task's own queue by ``task/<taskId>``, a
named queue by its name; ``type`` says which when the name alone is ambiguous::

    for queue in reprise.queues.list():
        print(queue.name, queue.running, queue.queued, queue.paused)
    reprise.queues.pause("task/send-email")
    reprise.queues.resume("emails")             # a named queue
    reprise.queues.retrieve("send-email", type="task")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from reprise.models import QueueItem

if TYPE_CHECKING:
    from reprise.client import Client

QueueType = Literal["id", "task", "custom"]


def queue_reference(queue: str, type: QueueType | None = None) -> tuple[str, QueueType]:
    """The path segment and ``type`` naming ``queue``: without ``type``, ``queue_…`` is an
    id, ``task/…`` a task's own queue, anything else a named queue. The ``/`` of a name is
    encoded twice, as the official SDK does."""
    if not queue:
        raise ValueError("a queue id or name is required")
    if type is None:
        type = "id" if queue.startswith("queue_") else (
            "task" if queue.startswith("task/") else "custom"
        )
    return quote(queue.replace("/", "%2F"), safe=""), type


def offset_pages(
    client: Callable[[], Client], path: str, per_page: int
) -> Iterator[dict[str, Any]]:
    """Every item of an offset-paginated list (``page``/``perPage``), page by page."""
    page = 1
    while True:
        data = client().transport.request_json(
            "GET", path, params={"page": str(page), "perPage": str(per_page)}
        )
        yield from data.get("data", [])
        pagination = data.get("pagination") or {}
        if page >= int(pagination.get("totalPages", 1)):
            return
        page += 1


class Queues:
    def __init__(self, client: Callable[[], Client]) -> None:
        self._client = client

    def list(self, *, per_page: int = 20) -> Iterator[QueueItem]:
        """Every queue of the key's environment, by name, a page at a time."""
        for item in offset_pages(self._client, "/api/v1/queues", per_page):
            yield QueueItem.model_validate(item)

    def retrieve(self, queue: str, *, type: QueueType | None = None) -> QueueItem:
        segment, kind = queue_reference(queue, type)
        data = self._client().transport.request_json(
            "GET", f"/api/v1/queues/{segment}", params={"type": kind}
        )
        return QueueItem.model_validate(data)

    def _pause(self, queue: str, type: QueueType | None, action: str) -> QueueItem:
        segment, kind = queue_reference(queue, type)
        data = self._client().transport.request_json(
            "POST", f"/api/v1/queues/{segment}/pause", json_body={"type": kind, "action": action}
        )
        return QueueItem.model_validate(data)

    def pause(self, queue: str, *, type: QueueType | None = None) -> QueueItem:
        """Start nothing more from this queue (runs executing finish; new ones wait)."""
        return self._pause(queue, type, "pause")

    def resume(self, queue: str, *, type: QueueType | None = None) -> QueueItem:
        """Start its runs again, in order."""
        return self._pause(queue, type, "resume")
