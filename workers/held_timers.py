"""Promotion timers held by a control process: a superseded one is let go at once.

Celery keeps an ETA message in the consumer's memory, unacknowledged, until its ETA. A
reschedule publishes a timer for the run's new schedule token, and every older timer of
that run is stale from then on (tokens only grow): held until its ETA, a storm of
reschedules on a few runs would keep thousands of stale timers in memory for minutes.

:func:`superseding_timers` is the execution strategy of ``reprise.promote_delayed_run``:
it wraps Celery's default one and, per run, remembers the newest timer this process holds.
A timer older than it is acknowledged on arrival; a newer one makes this process let go of
the one it held (its timer entry canceled, its message acknowledged). So a process holds
at most about one timer per run due within the horizon, however often each is
rescheduled. Letting go of a timer only drops a message that would promote nothing: its
token is stale for good, and Postgres (the sweep) stays the backstop for every run. Why
and what else was weighed: docs/architecture.md#timers.
"""

from __future__ import annotations

import heapq
import logging
import weakref
from collections.abc import Callable
from typing import Any

from celery.signals import task_revoked
from celery.worker import state as worker_state
from celery.worker.strategy import default as default_strategy
from kombu.asynchronous.timer import Timer as EventLoopTimer

log = logging.getLogger("reprise.timers")

# Canceled timer entries stay in the timer's heap until their time; past this many (and
# half the heap), the heap is rebuilt without them.
COMPACT_AFTER = 1024


class HeldTimers:
    """The newest timer held for each run, as ``(token, request)``.

    Requests are held weakly: once one has fired and finished, its run is forgotten.
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, weakref.ref[Any]]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def newest_token(self, run_id: str) -> int | None:
        held = self._held.get(run_id)
        return None if held is None or held[1]() is None else held[0]

    def hold(self, run_id: str, token: int, request: Any) -> Any | None:
        """Remember ``request`` as the run's timer for ``token``; returns the request it
        supersedes (held for an older token), if any. A timer for the same token (a
        duplicate, or an early timer re-armed) supersedes nothing: both stay."""
        held = self._held.get(run_id)
        previous = None if held is None else held[1]()
        if held is not None and previous is not None and held[0] > token:
            return None  # an older timer than the one held: the caller acks it on arrival

        def forget(ref: weakref.ref[Any], run_id: str = run_id) -> None:
            current = self._held.get(run_id)
            if current is not None and current[1] is ref:
                del self._held[run_id]

        self._held[run_id] = (token, weakref.ref(request, forget))
        if held is not None and previous is not None and held[0] < token:
            return previous
        return None


def timer_of(message: Any) -> tuple[str, int] | None:
    """``(run_id, token)`` of a ``reprise.promote_delayed_run`` message (protocol 2:
    ``[args, kwargs, embed]``); None if it has another shape."""
    try:
        args = message.payload[0]
        run_id, token = args[0], args[1]
    except (LookupError, TypeError, ValueError):
        return None
    if isinstance(run_id, str) and isinstance(token, int) and not isinstance(token, bool):
        return run_id, token
    return None


def superseding_timers(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    """Celery's default strategy for the promotion task, letting go of superseded timers.

    Only with the event-loop timer (the Redis transport's): the strategy and the timer
    then run on one thread, so a held timer cannot fire while it is being let go. With
    any other timer (a threaded one) this is Celery's default strategy.
    """
    handle = default_strategy(task, app, consumer, **kwargs)
    timer = consumer.timer
    if not isinstance(timer, EventLoopTimer):
        return handle  # type: ignore[no-any-return]
    held = HeldTimers()
    canceled = [0]

    def let_go(request: Any) -> None:
        entry = request._eta_timer_entry
        if entry is not None:
            timer.cancel(entry)
            entry.args = ()  # the heap keeps an empty, canceled entry, not the message
            canceled[0] += 1
        # What Celery does for a revoked request, so Flower and signal handlers see it go.
        worker_state.task_ready(request)
        request.acknowledge()
        consumer.qos.decrement_eventually()
        request.send_event("task-revoked", terminated=False, signum=None, expired=False)
        task_revoked.send(sender=request.task, request=request._context, terminated=False,
                          signum=None, expired=False)
        if canceled[0] > COMPACT_AFTER and canceled[0] * 2 > len(timer):
            _compact(timer)
            canceled[0] = 0

    def on_timer_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any,
                         **options: Any) -> Any:
        found = timer_of(message)
        if found is None:
            return handle(message, body, ack, reject, callbacks, **options)
        run_id, token = found
        newest = held.newest_token(run_id)
        if newest is not None and token < newest:
            ack(log, consumer.connection_errors)
            return None
        outcome = handle(message, body, ack, reject, callbacks, **options)
        request = worker_state.requests.get(message.headers.get("id"))
        if request is not None and request in worker_state.scheduled_requests:
            superseded = held.hold(run_id, token, request)
            if superseded is not None and superseded in worker_state.scheduled_requests:
                let_go(superseded)
        return outcome

    return on_timer_message


def _compact(timer: EventLoopTimer) -> None:
    """Rebuild the timer's heap without its canceled entries (the timer skips them when
    their time comes; until then they would only take memory)."""
    queue = getattr(timer, "_queue", None)
    if isinstance(queue, list):
        queue[:] = [item for item in queue if not item[2].canceled]
        heapq.heapify(queue)
