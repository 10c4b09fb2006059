"""``reprise.runs.bulk``: replay, cancel or reschedule many runs at once, over the API's
bulk actions (Trigger.dev's ``runs.bulk.*``).

Runs are chosen by ``run_ids`` (1 to 500) or by a filter (``status``, ``task``, ``tags``,
``created_from`` / ``created_to`` or ``period``, ``version``, ``queue``; a filter that
names no time covers the last 7 days). The selection is frozen when the server accepts it;
the server then works through it in batches::

    created = reprise.runs.bulk.replay(status="FAILED", task="send-email", period="1d")
    done = reprise.runs.bulk.poll(created.id, timeout=600)
    print(done.status, done.counts.success, done.counts.failure)
    preview = reprise.runs.bulk.cancel(tags="tenant_7", dry_run=True)  # writes nothing
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import quote

from reprise._resource import Listing, M, Operation, Resource
from reprise._sansio import Feed, Op, call_json, cursor_pages, sleep
from reprise.errors import RunPollTimeoutError
from reprise.models import BulkAction, BulkActionHandle, BulkActionPreview

if TYPE_CHECKING:
    from reprise.client import Delay

Words = str | Iterable[str]


class BulkFilterOptions(TypedDict, total=False):
    """The filter keywords of ``runs.bulk.replay/cancel/reschedule`` (see :func:`bulk_filter`)."""

    status: Words | None
    task: Words | None
    tags: Words | None
    created_from: datetime | None
    created_to: datetime | None
    period: str | timedelta | None
    version: Words | None
    queue: Words | None
    is_test: bool | None
    batch: str | None
    bulk_action: str | None
    replays_only: bool | None
    not_replayed: bool | None


class BulkPollTimeoutError(RunPollTimeoutError):
    """:meth:`RunsBulk.poll` gave up: the bulk action was still PENDING after ``timeout``
    seconds. ``run`` is the bulk action as last read."""

    def __init__(self, bulk_id: str, timeout: float, action: BulkAction) -> None:
        super().__init__(bulk_id, timeout, action)
        message = (f"bulk action {bulk_id} was not done after {timeout:g}s "
                   f"({action.counts.processed} of {action.counts.total} runs)")
        self.args = (message,)


def _words(value: Words | None) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    return items or None


def _one_or_list(value: Words | None) -> str | list[str] | None:
    """One word as a string, several as a list (the SDK never splits a word at commas)."""
    items = _words(value)
    if items is None:
        return None
    return items[0] if len(items) == 1 else items


def bulk_filter(
    *,
    status: Words | None = None,
    task: Words | None = None,
    tags: Words | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    period: str | timedelta | None = None,
    version: Words | None = None,
    queue: Words | None = None,
    is_test: bool | None = None,
    batch: str | None = None,
    bulk_action: str | None = None,
    replays_only: bool | None = None,
    not_replayed: bool | None = None,
) -> dict[str, Any]:
    """A bulk action's ``filter`` as the API takes it (absent fields omitted)."""
    from reprise.client import iso_utc

    if isinstance(period, timedelta):
        period = f"{max(1, int(period.total_seconds()))}s"
    queues = _words(queue)
    data: dict[str, Any] = {
        "status": _one_or_list(status),
        "taskIdentifier": _one_or_list(task),
        "tag": _one_or_list(tags),
        "from": iso_utc(created_from) if created_from is not None else None,
        "to": iso_utc(created_to) if created_to is not None else None,
        "period": period,
        "version": _one_or_list(version),
        "queue": (queues[0] if len(queues) == 1 else queues) if queues else None,
        "isTest": is_test,
        "batch": batch,
        "bulkAction": bulk_action,
        "replaysOnly": replays_only,
        "notReplayed": not_replayed,
    }
    return {key: value for key, value in data.items() if value is not None}


def _create(
    action: str,
    run_ids: Iterable[str] | None,
    name: str | None,
    dry_run: bool,
    filters: BulkFilterOptions,
    **extra: Any,
) -> Op[BulkActionHandle | BulkActionPreview]:
    ids = None if run_ids is None else list(run_ids)
    selection = bulk_filter(**filters)
    if (ids is None) == (not selection):
        raise ValueError("select the runs by run_ids or by filters, not both nor neither")
    body: dict[str, Any] = {"action": action}
    if ids is not None:
        body["runIds"] = ids
    else:
        body["filter"] = selection
    if name is not None:
        body["name"] = name
    if dry_run:
        body["dryRun"] = True
    body.update({key: value for key, value in extra.items() if value is not None})
    data = yield from call_json("POST", "/api/v1/bulk-actions", json_body=body)
    if dry_run:
        return BulkActionPreview.model_validate(data)
    return BulkActionHandle.model_validate(data)


class RunsBulk(Resource[M]):
    """``reprise.runs.bulk``: create (or preview), list, retrieve, poll and abort bulk
    actions."""

    @Operation
    def replay(
        self,
        *,
        run_ids: Iterable[str] | None = None,
        name: str | None = None,
        dry_run: bool = False,
        max_per_second: float | None = None,
        **filters: Unpack[BulkFilterOptions],
    ) -> Op[BulkActionHandle | BulkActionPreview]:
        """Replay every selected run as a new run (``max_per_second`` paces it).

        Returns the new action's ``{id}``, or with ``dry_run`` a :class:`BulkActionPreview`
        (nothing is done). ``filters`` are :func:`bulk_filter`'s keywords."""
        return (yield from _create("replay", run_ids, name, dry_run, filters,
                                   maxPerSecond=max_per_second))

    @Operation
    def cancel(
        self,
        *,
        run_ids: Iterable[str] | None = None,
        name: str | None = None,
        dry_run: bool = False,
        **filters: Unpack[BulkFilterOptions],
    ) -> Op[BulkActionHandle | BulkActionPreview]:
        """Cancel every selected run (one already finished counts as a failure)."""
        return (yield from _create("cancel", run_ids, name, dry_run, filters))

    @Operation
    def reschedule(
        self,
        delay: Delay,
        *,
        run_ids: Iterable[str] | None = None,
        name: str | None = None,
        dry_run: bool = False,
        **filters: Unpack[BulkFilterOptions],
    ) -> Op[BulkActionHandle | BulkActionPreview]:
        """Move every selected DELAYED run to one time: ``delay`` from now (a duration or a
        ``timedelta``) or a ``datetime``."""
        from reprise.client import delay_value

        return (yield from _create("reschedule", run_ids, name, dry_run, filters,
                                   delay=delay_value(delay)))

    @Operation
    def retrieve(self, bulk_action_id: str) -> Op[BulkAction]:
        """The bulk action and its progress (``status``, ``counts``)."""
        data = yield from call_json("GET", _path(bulk_action_id))
        return BulkAction.model_validate(data)

    @Listing
    def list(self, *, page_size: int | None = None,
             limit: int | None = None) -> Feed[BulkAction]:
        """Bulk actions of the key's environment, newest first, page by page. The server
        lists replays and cancels to SDK clients (Trigger.dev's vocabulary)."""
        params: dict[str, str] = {"page[size]": str(page_size)} if page_size else {}
        return cursor_pages("/api/v1/bulk-actions", params, limit, BulkAction.model_validate)

    @Operation
    def abort(self, bulk_action_id: str) -> Op[BulkActionHandle]:
        """Stop a PENDING bulk action before its next batch (runs already handled stay
        so); one already COMPLETED or ABORTED raises :class:`~reprise.errors.ApiError`
        (HTTP 409)."""
        data = yield from call_json("POST", _path(bulk_action_id) + "/abort")
        return BulkActionHandle.model_validate(data)

    @Operation
    def poll(
        self,
        bulk_action_id: str,
        *,
        timeout: float | None = None,
        interval: float = 1.0,
        on_progress: Callable[[BulkAction], None] | None = None,
    ) -> Op[BulkAction]:
        """Wait until the bulk action is COMPLETED or ABORTED and return it, reading it
        every ``interval`` seconds (``on_progress`` sees each read). After ``timeout``
        seconds raises :class:`BulkPollTimeoutError`."""
        if interval <= 0:
            raise ValueError("interval must be more than 0 seconds")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            action = yield from RunsBulk.retrieve.op(self, bulk_action_id)
            if on_progress is not None:
                on_progress(action)
            if action.is_final:
                return action
            wait = interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BulkPollTimeoutError(bulk_action_id, timeout or 0.0, action)
                wait = min(interval, left)
            yield from sleep(wait)


def _path(bulk_action_id: str) -> str:
    if not bulk_action_id:
        raise ValueError("a bulk action id is required")
    return f"/api/v1/bulk-actions/{quote(bulk_action_id, safe='')}"
