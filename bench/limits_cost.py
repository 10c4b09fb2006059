"""What a run under a concurrency limit costs, in this process, beside an unlimited run:
the worker's own path (``workers.execution.execute_run``: claim, attempt, heartbeat,
capture, outcome, and for a limited run the settlement that frees its slot and admits the
next), with no Celery worker in between.

    .venv/bin/python bench/limits_cost.py                     # 3 rounds, 400 runs each
    .venv/bin/python bench/limits_cost.py --rounds 5 --runs 600 --publish
    PYTHONPATH=<checkout>/server .venv/bin/python bench/limits_cost.py   # an earlier commit

Each round triggers ``--runs`` unlimited no-ops (``bench-noop``) and as many limited ones
(``bench-limited``, ``total`` = ``--threads``), then executes them, alternating:

* **sequential**: one run after another; CPU per run of this process (every thread) and of
  its Postgres backends (``/proc/<pid>/stat`` of the pids ``pg_stat_activity`` lists for
  the bench's database), and statements and transactions per run. A limited run is taken
  from the runs its predecessors' completions admitted, as a worker gets them.
* **threads**: ``--threads`` threads executing runs as they are admitted; runs per second
  and CPU per run. With a limit equal to the threads, every completion hands its slot to
  the next run, so the limit's settlements are serial: the ratio limited / unlimited is
  this path's ceiling for the Celery drain of ``bench/limits.py``.

Admitted runs are handed to the executing threads in this process; with ``--publish`` each
admission is also published to Redis as the worker would (the pool process's publish), so
its cost is counted. Medians of the rounds are printed; ``--statements`` prints the
statements of one limited run.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.in_process import InProcess
from bench.throughput import sql
from bench.timing_stack import configure, servers

VERSION = "limits-cost.1"
UNLIMITED, LIMITED = "bench-noop", "bench-limited"
TICKS = os.sysconf("SC_CLK_TCK")


def backend_pids() -> list[int]:
    return [int(pid) for (pid,) in sql(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    )]


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process (user + system), 0 if it is gone or unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class Meter:
    """CPU of this process and of the bench database's Postgres backends, statements and
    transactions, between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.statements = 0
        self.transactions = 0
        self.log: list[str] | None = None
        self._lock = threading.Lock()
        meter = self

        @event.listens_for(Engine, "before_cursor_execute")
        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            with meter._lock:
                meter.statements += 1
                if meter.log is not None:
                    meter.log.append(" ".join(statement.split())[:110])

        @event.listens_for(Engine, "commit")
        def committed(conn: Any) -> None:
            with meter._lock:
                meter.transactions += 1

    def start(self) -> None:
        self.pids = backend_pids()
        self.pg = {pid: proc_cpu(pid) for pid in self.pids}
        self.cpu = time.process_time()
        self.wall = time.perf_counter()
        self.statements = self.transactions = 0

    def stop(self, runs: int) -> dict[str, float]:
        cpu = time.process_time() - self.cpu
        wall = time.perf_counter() - self.wall
        statements, transactions = self.statements, self.transactions
        pg = sum(proc_cpu(pid) - self.pg.get(pid, 0.0) for pid in set(backend_pids()))
        return {
            "runs/s": runs / wall,
            "process ms": cpu * 1000 / runs,
            "postgres ms": pg * 1000 / runs,
            "total ms": (cpu + pg) * 1000 / runs,
            "statements": statements / runs,
            "commits": transactions / runs,
        }


@contextmanager
def admissions(publish: bool) -> Iterator[queue.Queue[str]]:
    """Every run published after commit lands in the returned queue (and, with
    ``publish``, is published to Redis as well)."""
    from reprise_server.shared import broker

    admitted: queue.Queue[str] = queue.Queue()
    saved = broker.dispatch_runs, broker.dispatch_run

    def dispatch_runs(runs: Any, *args: Any, **kwargs: Any) -> None:
        runs = list(runs)
        if publish:
            saved[0](runs, *args, **kwargs)
        for run_id, _ in runs:
            admitted.put(run_id)

    def dispatch_run(run_id: str, queue_name: str | None, *args: Any, **kwargs: Any) -> None:
        if publish:
            saved[1](run_id, queue_name, *args, **kwargs)
        admitted.put(run_id)

    broker.dispatch_runs, broker.dispatch_run = dispatch_runs, dispatch_run  # type: ignore[assignment]
    try:
        yield admitted
    finally:
        broker.dispatch_runs, broker.dispatch_run = saved


def execute(bench: InProcess, run_id: str) -> None:
    from reprise_server.workers import execution

    outcome = execution.execute_run(run_id, bench.registry, "bench-worker", bench.version)
    assert outcome.status == "COMPLETED", outcome


def trigger(bench: InProcess, task_id: str, runs: int) -> None:
    """``runs`` of ``task_id``; those published (all unlimited ones, the first admitted
    limited ones) land in the queue of :func:`admissions`."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run

    for start in range(0, runs, 200):
        with transaction() as session:
            for _ in range(min(200, runs - start)):
                trigger_run(session, bench.auth, task_id, None, TriggerOptions())


def run_all(bench: InProcess, ready: queue.Queue[str], runs: int, threads: int) -> None:
    """Execute ``runs`` runs as they become ready, on ``threads`` threads."""
    remaining = [runs]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def loop() -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            try:
                execute(bench, ready.get(timeout=30))
            except BaseException as exc:
                errors.append(exc)
                return

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]


@dataclass
class Case:
    name: str
    task_id: str
    threads: int


def clean() -> None:
    """No run left, and every limit empty (its slots, line and keys with the runs)."""
    sql("DELETE FROM attempts; DELETE FROM runs; DELETE FROM concurrency_slots; "
        "DELETE FROM admission_line; DELETE FROM concurrency_keys; "
        "UPDATE concurrency_limits SET running = 0")


def measure(bench: InProcess, meter: Meter, case: Case, runs: int, publish: bool) -> dict[str, float]:
    clean()
    with admissions(publish) as ready:
        trigger(bench, case.task_id, runs)
        meter.start()
        run_all(bench, ready, runs, case.threads)
        return meter.stop(runs)


def show_statements(bench: InProcess, meter: Meter) -> None:
    clean()
    with admissions(False) as ready:
        trigger(bench, LIMITED, 8)
        for _ in range(3):
            execute(bench, ready.get())
        meter.log = []
        execute(bench, ready.get())
        log, meter.log = meter.log, None
    print(f"statements of one limited run ({len(log)}):")
    for line in log:
        print("  ", line)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4,
                        help="executing threads, and the limited task's total (4)")
    parser.add_argument("--publish", action="store_true",
                        help="also publish every admission to Redis")
    parser.add_argument("--statements", action="store_true",
                        help="print the statements of one limited run")
    parser.add_argument("--only", choices=["sequential", "threads"])
    args = parser.parse_args()
    os.environ["REPRISE_BENCH_SLOTS"] = str(args.threads)
    with servers() as (db_url, redis_url):
        configure(db_url, redis_url, VERSION, "bench.throughput_tasks,bench.limits_tasks")
        bench = InProcess("bench.throughput_tasks,bench.limits_tasks", VERSION, "limits-cost")
        meter = Meter()
        # Warm up the pools, caches and the statements' plans.
        for case in (Case("", UNLIMITED, args.threads), Case("", LIMITED, args.threads)):
            measure(bench, meter, case, 100, args.publish)
        if args.statements:
            show_statements(bench, meter)
        cases = [
            Case("sequential unlimited", UNLIMITED, 1), Case("sequential limited", LIMITED, 1),
            Case(f"{args.threads} threads unlimited", UNLIMITED, args.threads),
            Case(f"{args.threads} threads limited", LIMITED, args.threads),
        ]
        if args.only:
            cases = [c for c in cases if c.name.startswith(
                "sequential" if args.only == "sequential" else f"{args.threads} threads")]
        results: dict[str, list[dict[str, float]]] = {c.name: [] for c in cases}
        for round_ in range(args.rounds):
            for case in cases:
                results[case.name].append(measure(bench, meter, case, args.runs, args.publish))
            print(f"round {round_ + 1}: " + ", ".join(
                f"{name} {rows[-1]['runs/s']:.0f}/s {rows[-1]['total ms']:.2f} ms"
                for name, rows in results.items()), flush=True)
    report(results)


def report(results: dict[str, list[dict[str, float]]]) -> None:
    keys = ["runs/s", "process ms", "postgres ms", "total ms", "statements", "commits"]
    median = {name: {k: statistics.median(r[k] for r in rows) for k in keys}
              for name, rows in results.items()}
    print("\n| median of the rounds | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, row in median.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    for kind in ("sequential", "threads"):
        pair = [name for name in median if kind in name]
        if len(pair) == 2:
            unlimited, limited = (median[name] for name in pair)
            print(f"{kind}: limited / unlimited CPU per run "
                  f"{limited['total ms'] / unlimited['total ms']:.2f}, runs/s "
                  f"{limited['runs/s'] / unlimited['runs/s']:.2f}, limited - unlimited CPU "
                  f"{limited['total ms'] - unlimited['total ms']:.2f} ms "
                  f"(process {limited['process ms'] - unlimited['process ms']:.2f}, "
                  f"postgres {limited['postgres ms'] - unlimited['postgres ms']:.2f})")


if __name__ == "__main__":
    main()
