"""The worker's prefork pool: Celery's, except that a pool child stops only when the
worker's main process stops it.

systemd's default ``KillMode=control-group`` (and ``kill`` on every pid of a worker) sends
SIGTERM to each pool child as well as to the main process. Celery leaves a child's SIGTERM
deadly, so each run in flight was cut (``WorkerLostError``) and re-executed a stale window
later, while the main process was starting the warm shutdown that would have let it finish.
Here a child ignores a SIGTERM the main process did not order; the main process orders one
only to stop a child itself (a cold shutdown cancelling its task, a terminated task, a hard
time limit, the end of a forced pool stop) and marks the child first, in memory the pool
children share with it. Why: docs/operations.md#shutdown-and-grace-periods.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from types import FrameType
from typing import Any

from billiard.common import _shutdown_cleanup
from celery.concurrency import asynpool, prefork

log = logging.getLogger("reprise.worker")

_SLOTS = 256


class StopOrders:
    """Which pool children the main process is stopping: a ring of pids, and a flag for all
    of them. Written by the main process, read by a child in its SIGTERM handler; shared
    memory allocated before the pool forks, so no lock or message is needed to read it."""

    def __init__(self) -> None:
        self._all = multiprocessing.RawValue(ctypes.c_int, 0)
        self._pids = multiprocessing.RawArray(ctypes.c_int, _SLOTS)
        self._next = 0

    def order(self, pid: int) -> None:
        self._pids[self._next % _SLOTS] = pid
        self._next += 1

    def order_all(self) -> None:
        self._all.value = 1

    def ordered(self, pid: int) -> bool:
        return bool(self._all.value) or pid in self._pids[:]


STOP_ORDERS = StopOrders()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if STOP_ORDERS.ordered(os.getpid()) or _PoolChild.exiting:
        # The pool's own stop: exactly what billiard does in a child (SystemExit, so
        # finally blocks run and the child reports its death).
        _shutdown_cleanup(signum, frame)
        return
    # A SIGTERM sent to every process of the worker (systemd's control group, a kill of
    # each pid) also reached the main process, whose warm shutdown lets this run finish and
    # then stops this child; sent to the children alone, it stops nothing.
    log.warning(
        "pool child %d ignores SIGTERM: only the worker's main process (pid %d) stops it; "
        "signal that process to stop the worker",
        os.getpid(), os.getppid(),
    )


class _PoolChild(asynpool.Worker):  # type: ignore[misc]
    exiting = False  # per child: set in the child once it leaves its loop

    def on_loop_start(self, pid: int) -> None:
        # Here, not at worker_process_init: billiard replaces every handler installed by
        # then with its own (SystemExit on SIGTERM) after the initializer returns.
        signal.signal(signal.SIGTERM, _on_sigterm)
        super().on_loop_start(pid)

    def _do_exit(self, pid: int, exitcode: int | None, exc: BaseException | None = None) -> None:
        # The main process answers a child's death report with a SIGTERM: honour it, or the
        # child would sit out the rest of billiard's one-second exit pause.
        type(self).exiting = True
        super()._do_exit(pid, exitcode, exc)


class _AsynPool(asynpool.AsynPool):  # type: ignore[misc]
    Worker = _PoolChild

    def _trywaitkill(self, worker: Any) -> None:
        # A hard time limit: SIGTERM, then SIGKILL if the child is still there.
        STOP_ORDERS.order(worker.pid)
        super()._trywaitkill(worker)


class PreforkPool(prefork.TaskPool):  # type: ignore[misc]
    """``reprise worker --pool prefork``."""

    Pool = _AsynPool

    def on_start(self) -> None:
        super().on_start()
        terminate_child_job: Any = self._pool.terminate_job

        def terminate_job(pid: int, signal: int | None = None) -> None:
            # A cold shutdown cancelling a running task, or a task terminated on request.
            STOP_ORDERS.order(pid)
            terminate_child_job(pid, signal)

        self.terminate_job = terminate_job

    def on_terminate(self) -> None:
        # A forced stop of the whole pool (the end of a cold shutdown).
        STOP_ORDERS.order_all()
        super().on_terminate()
