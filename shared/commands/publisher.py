"""Publishing accepted commands after commit, off the request's critical path.

An accepted command is durable once its row is committed (the outbox); the Celery message
only makes a worker apply it sooner. Publishing costs more CPU and time than the rest of
the accept (Celery builds the message, kombu a Redis client, plus the ``task-sent``
event), so an API process hands committed command ids to one background thread that
publishes them in batches over one producer, lingering a few milliseconds for the
commands accepted right after the first (longer while commands keep coming). If that
publish fails, or the process dies with ids still queued, the relay sweep republishes the
commands a few seconds later, as it does for any lost message: the latency of that apply
grows, nothing is lost.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

from reprise_server.shared import broker

log = logging.getLogger("reprise.commands")

BATCH_SIZE = 200
# How long the first command of a batch waits for others: a replay is applied at most this
# much later, and under load in batches (broker.COMMANDS_PER_MESSAGE) instead of one by one.
LINGER_SECONDS = 0.01
# While commands keep coming (the previous batch went out less than BUSY_WINDOW_SECONDS
# ago), the first of a batch waits this long instead: the control process pays Celery's
# cost per message (receive, trace, events, a transaction) whatever the message carries
# (under bench/throughput.py's replays, about 6 commands per message instead of 4-5, and
# a third less of its CPU per replay). A replay accepted after a quiet moment still waits
# LINGER_SECONDS only.
BUSY_LINGER_SECONDS = 0.03
BUSY_WINDOW_SECONDS = 0.1


class CommandPublisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.Queue[str] = queue.Queue()

    def submit(self, command_id: str) -> None:
        """Publish ``command_id`` soon (call after the command's transaction committed)."""
        self._ensure_thread()
        self._queue.put(command_id)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far was handed to the broker (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def _ensure_thread(self) -> None:
        # A forked child inherits the parent's queue but not its thread: start its own.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.Queue()
                thread = threading.Thread(target=self._run, name="command-publisher", daemon=True)
                thread.start()
                self._pid = os.getpid()

    def _run(self) -> None:
        pending = self._queue
        last_published = float("-inf")
        while True:
            batch = [pending.get()]
            # Commands published together are applied together (one message, one
            # transaction): wait a little for the ones accepted right after this one.
            first = time.monotonic()
            busy = first - last_published < BUSY_WINDOW_SECONDS
            until = first + (BUSY_LINGER_SECONDS if busy else LINGER_SECONDS)
            while len(batch) < BATCH_SIZE:
                try:
                    batch.append(pending.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            last_published = time.monotonic()
            try:
                broker.publish_commands(batch)
            except Exception:
                log.warning(
                    "publishing %d commands failed; the relay sweep will republish them",
                    len(batch), exc_info=True,
                )
            finally:
                for _ in batch:
                    pending.task_done()


PUBLISHER = CommandPublisher()
