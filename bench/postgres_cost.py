"""Postgres's CPU per run: the statements of a run's lifecycle, replayed from 16 clients
straight at Postgres, beside the hand-written job table's, in the same run.

    .venv/bin/python bench/postgres_cost.py                 # 3 rounds of 2,000 runs
    .venv/bin/python bench/postgres_cost.py --rounds 5 --runs 4000

A run's three statements are taken from the real code path, in this process: a trigger
(``runs.service.trigger_run``: the run INSERT that checks its creation context) and an
execution of it (``workers.execution.execute_run``: the claim that opens the attempt, and
the completion that closes it). Each client then replays them for fresh run ids on two
connections of its own (a trigger commits its INSERT; the claim and the completion
commit alone, as a worker's do), with no Python of Reprise's in between, so only
Postgres's share is measured, and the rows compare:

* **Reprise, nobody listening**: the trigger on ``runs`` stamps each write for realtime;
  no api process is registered in ``realtime_listeners``, so it notifies nobody.
* **Reprise, a realtime listener registered**: as while some subscription waits: every
  write sends ``NOTIFY reprise_runs`` (holding the notification-queue lock through its
  commit).
* **DIY job table**: what a team writes by hand: INSERT a job row, UPDATE it done.

CPU is the whole Postgres server's (the postmaster and every process below it, from
``/proc``: backends, WAL writer, checkpointer), so it needs Postgres on this machine
(embedded, or ``REPRISE_DATABASE_URL`` pointing at a local server).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.in_process import InProcess
from bench.throughput import _tree, cpu_seconds, sql, store_pids
from bench.throughput_tasks import CREATE_DIY_TABLE, DIY_TABLE
from bench.timing_stack import configure, servers

VERSION = "postgres-cost.1"
CLIENTS = 16
Statement = tuple[str, dict[str, Any]]


@contextmanager
def captured() -> Iterator[list[Statement]]:
    from sqlalchemy import event

    from reprise_server.shared.db import get_engine

    seen: list[Statement] = []

    def keep(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, dict(params or {})))

    event.listen(get_engine(), "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(get_engine(), "before_cursor_execute", keep)


def run_statements(bench: InProcess) -> tuple[Statement, Statement, Statement]:
    """The INSERT, claim and completion of one run, as the code sends them (the second
    run of the task: the first reads its creation context apart)."""
    from reprise_server.workers import execution

    for _ in range(2):
        with captured() as triggered:
            [run_id] = bench.trigger("bench-noop", 1, None)
        with captured() as executed:
            outcome = execution.execute_run(run_id, bench.registry, "bench-worker", VERSION)
        assert outcome.status == "COMPLETED", outcome
    [insert] = [s for s in triggered if s[0].startswith("INSERT INTO runs")]
    claim, completion = executed
    return insert, claim, completion


Client = Callable[[psycopg.Connection[Any], psycopg.Connection[Any]], None]


def reprise_client(insert: Statement, claim: Statement, completion: Statement) -> Client:
    def one_run(trigger: psycopg.Connection[Any], worker: psycopg.Connection[Any]) -> None:
        run_id = "run_" + secrets.token_hex(12)
        with trigger.transaction():
            trigger.execute(insert[0], {**insert[1], "id": run_id})
        worker.execute(claim[0], {**claim[1], "run_id": run_id,
                                  "attempt_id": "attempt_" + secrets.token_hex(12)}).fetchall()
        [row] = worker.execute(completion[0], {**completion[1], "b_closing_run": run_id}).fetchall()
        assert row[1] == run_id, row

    return one_run


def diy_client(trigger: psycopg.Connection[Any], worker: psycopg.Connection[Any]) -> None:
    job_id = secrets.token_hex(12)
    with trigger.transaction():
        trigger.execute(f"INSERT INTO {DIY_TABLE} (id, status) VALUES (%s, 'queued')", (job_id,))
    worker.execute(
        f"UPDATE {DIY_TABLE} SET status = 'done', finished_at = now() WHERE id = %s", (job_id,)
    )


def replay(conns: list[Any], postgres: int, client: Client, runs: int) -> tuple[float, float]:
    """(Postgres CPU ms per run, runs per second) of ``runs`` from the clients at once."""
    each = runs // len(conns)

    def loop(trigger: Any, worker: Any) -> None:
        for _ in range(each):
            client(trigger, worker)

    threads = [threading.Thread(target=loop, args=pair) for pair in conns]
    before = sum(cpu_seconds(pid) for pid in _tree(postgres))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    after = sum(cpu_seconds(pid) for pid in _tree(postgres))
    return (after - before) * 1000 / (each * len(conns)), each * len(conns) / seconds


def listener(registered: bool) -> None:
    sql("DELETE FROM realtime_listeners WHERE listener = 'bench'")
    if registered:
        sql("INSERT INTO realtime_listeners VALUES ('bench', now() + interval '1 hour')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()

    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "bench.throughput_tasks")
        postgres = store_pids(env).get("postgres")
        if postgres is None:
            sys.exit("Postgres is not on this machine: its CPU cannot be read from /proc")
        sql(CREATE_DIY_TABLE)
        bench = InProcess("bench.throughput_tasks", VERSION, "postgres-cost")
        reprise = reprise_client(*run_statements(bench))
        url = db_url.replace("postgresql+psycopg", "postgresql")
        conns = [(psycopg.connect(url), psycopg.connect(url, autocommit=True))
                 for _ in range(CLIENTS)]
        cases: dict[str, tuple[Client, Callable[[], None]]] = {
            "Reprise, nobody listening": (reprise, lambda: listener(False)),
            "Reprise, a realtime listener registered": (reprise, lambda: listener(True)),
            "DIY job table": (diy_client, lambda: None),
        }
        for client, setup in cases.values():  # warm-up: plans cached, pages in memory
            setup()
            replay(conns, postgres, client, CLIENTS * 20)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (client, setup) in cases.items():
                setup()
                results[name].append(replay(conns, postgres, client, args.runs))
        for trigger, worker in conns:
            trigger.close()
            worker.close()

    diy = statistics.median(cpu for cpu, _ in results["DIY job table"])
    print(f"\n{args.rounds} rounds of {args.runs} runs from {CLIENTS} clients, medians\n")
    print("| statements of a run (Postgres alone) | Postgres CPU ms per run | x DIY | runs/s |")
    print("|---|---:|---:|---:|")
    for name, samples in results.items():
        cpu = statistics.median(c for c, _ in samples)
        rate = statistics.median(r for _, r in samples)
        print(f"| {name} | {cpu:.2f} | {cpu / diy:.1f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
