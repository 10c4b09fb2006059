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

from typing import Literal
from urllib.parse import quote

from reprise._resource import Listing, M, Operation, Resource
from reprise._sansio import Feed, Op, call_json, offset_pages
from reprise.models import QueueItem

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


def _pause(queue: str, type: QueueType | None, action: str) -> Op[QueueItem]:
    segment, kind = queue_reference(queue, type)
    data = yield from call_json(
        "POST", f"/api/v1/queues/{segment}/pause", json_body={"type": kind, "action": action}
    )
    return QueueItem.model_validate(data)


class Queues(Resource[M]):
    @Listing
    def list(self, *, per_page: int = 20) -> Feed[QueueItem]:
        """Every queue of the key's environment, by name, a page at a time."""
        return offset_pages("/api/v1/queues", per_page, QueueItem.model_validate)

    @Operation
    def retrieve(self, queue: str, *, type: QueueType | None = None) -> Op[QueueItem]:
        segment, kind = queue_reference(queue, type)
        data = yield from call_json("GET", f"/api/v1/queues/{segment}", params={"type": kind})
        return QueueItem.model_validate(data)

    @Operation
    def pause(self, queue: str, *, type: QueueType | None = None) -> Op[QueueItem]:
        """Start nothing more from this queue (runs executing finish; new ones wait)."""
        return (yield from _pause(queue, type, "pause"))

    @Operation
    def resume(self, queue: str, *, type: QueueType | None = None) -> Op[QueueItem]:
        """Start its runs again, in order."""
        return (yield from _pause(queue, type, "resume"))
