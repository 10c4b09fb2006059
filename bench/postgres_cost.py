"""Postgres's CPU per run: the statements of a run's lifecycle, replayed from 16 clients
straight at Postgres, beside the hand-written job table's, in the same run.

    .venv/bin/python bench/postgres_cost.py                 # 3 rounds of 2,000 runs
    .venv/bin/python bench/postgres_cost.py --rounds 5 --runs 4000
    .venv/bin/python bench/postgres_cost.py --schema         # and each part of the schema

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

``--schema`` adds, in the same run, what each part of the ``runs`` schema costs: the same
three statements retargeted at copies of ``runs`` and ``attempts`` (``CREATE TABLE … (LIKE
… INCLUDING ALL)``: every index and default, no trigger, no foreign key), then with the
realtime trigger or the foreign keys put back, then with the primary key alone; and the
floor any design with Reprise's guarantees pays: the job table written with three durable
commits (the accept, the claim before user code, the completion) and an attempt row
opened by the claim and closed by the completion. And a probe of a design the code does
not have: a narrow state table (status, attempt, holder, heartbeat, times, output, with
the status indexes) beside the wide record (written once, with the other indexes), its
claim and completion hand-written after the real ones, guards included.

CPU is the whole Postgres server's (the postmaster and every process below it, from
``/proc``: backends, WAL writer, checkpointer), so it needs Postgres on this machine
(embedded, or ``REPRISE_DATABASE_URL`` pointing at a local server).
"""

from __future__ import annotations

import argparse
import json
import re
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


def guaranteed_floor(trigger: psycopg.Connection[Any], worker: psycopg.Connection[Any]) -> None:
    """The job table with what Reprise guarantees: a durable accept, a claim committed
    before user code that opens an attempt, a completion that closes it."""
    job_id = secrets.token_hex(12)
    with trigger.transaction():
        trigger.execute(f"INSERT INTO {DIY_TABLE} (id, status) VALUES (%s, 'queued')", (job_id,))
    worker.execute(
        f"WITH claimed AS (UPDATE {DIY_TABLE} SET status = 'running' WHERE id = %s "
        "AND status = 'queued' RETURNING id) "
        f"INSERT INTO {DIY_ATTEMPTS} SELECT id, 1, 'running' FROM claimed", (job_id,))
    worker.execute(
        f"WITH done AS (UPDATE {DIY_TABLE} SET status = 'done', finished_at = now() "
        "WHERE id = %s AND status = 'running' RETURNING id) "
        f"UPDATE {DIY_ATTEMPTS} SET status = 'done' "
        "WHERE run_id = (SELECT id FROM done) AND number = 1", (job_id,))


DIY_ATTEMPTS = "bench_diy_attempts"
# The copies of runs and attempts (by their tables' suffix) and what each keeps.
SCHEMA_COPIES = {
    "i": "every index, no trigger, no foreign key",
    "t": "every index and the realtime trigger, no foreign key",
    "f": "every index and the foreign keys, no trigger",
    "p": "the primary key of runs alone (attempts' keys kept), no trigger, no foreign key",
}


def copy_schema() -> None:
    """The copies of ``runs`` and ``attempts`` :data:`SCHEMA_COPIES` names."""
    sql(f"CREATE TABLE IF NOT EXISTS {DIY_ATTEMPTS} "
        "(run_id text, number int, status text, PRIMARY KEY (run_id, number))")
    for suffix, runs_like in [("i", "INCLUDING ALL"), ("t", "INCLUDING ALL"),
                              ("f", "INCLUDING ALL"),
                              ("p", "INCLUDING DEFAULTS INCLUDING CONSTRAINTS")]:
        sql(f"CREATE TABLE runs_{suffix} (LIKE runs {runs_like})")
        sql(f"CREATE TABLE attempts_{suffix} (LIKE attempts INCLUDING ALL)")
    sql("ALTER TABLE runs_p ADD PRIMARY KEY (id)")
    sql("CREATE TRIGGER runs_t_realtime BEFORE INSERT OR UPDATE ON runs_t "
        "FOR EACH ROW EXECUTE FUNCTION runs_realtime_change()")
    sql("ALTER TABLE runs_f ADD FOREIGN KEY (environment_id) REFERENCES environments (id) "
        "ON DELETE CASCADE")
    sql("ALTER TABLE runs_f ADD FOREIGN KEY (project_id) REFERENCES projects (id) "
        "ON DELETE CASCADE")
    sql("ALTER TABLE attempts_f ADD FOREIGN KEY (run_id) REFERENCES runs_f (id) "
        "ON DELETE CASCADE")


def retargeted(
    statements: tuple[Statement, Statement, Statement], suffix: str
) -> tuple[Statement, Statement, Statement]:
    """``statements`` writing ``runs_<suffix>`` and ``attempts_<suffix>`` instead."""
    insert, claim, completion = (
        (re.sub(r"\b(runs|attempts)\b", rf"\1_{suffix}", statement), params)
        for statement, params in statements
    )
    return insert, claim, completion


# The narrow-state probe: the record is ``runs``' copy without its status indexes, the state
# table carries what a run's moves change, with those indexes.
_STATE_INDEXES = {"pk_runs", "ix_runs_env_status_created", "ix_runs_delayed_due",
                  "ix_runs_queued_ttl", "ix_runs_dispatchable", "ix_runs_executing_heartbeat",
                  "ix_runs_pending_version", "ix_runs_env_admission"}
_PROBE_STATE = [
    """CREATE TABLE probe_state (
        id varchar(64) PRIMARY KEY, environment_id varchar(32) NOT NULL,
        created_at timestamptz NOT NULL, status varchar(20) NOT NULL, version varchar(100),
        attempt_count int NOT NULL DEFAULT 0, locked_by varchar(200), admission varchar(8),
        concurrency_limits varchar(128)[], waitpoint_id varchar(64),
        delayed_until timestamptz, ttl_expires_at timestamptz, dispatched_at timestamptz,
        dequeued_at timestamptz, started_at timestamptz, finished_at timestamptz,
        heartbeat_at timestamptz, updated_at timestamptz NOT NULL DEFAULT now(),
        duration_ms bigint NOT NULL DEFAULT 0, output jsonb, output_type varchar(40),
        error jsonb)""",
    "CREATE INDEX ON probe_state (environment_id, status, created_at DESC)",
    "CREATE INDEX ON probe_state (delayed_until) WHERE status = 'DELAYED'",
    ("CREATE INDEX ON probe_state (ttl_expires_at) "
     "WHERE status = 'QUEUED' AND ttl_expires_at IS NOT NULL"),
    "CREATE INDEX ON probe_state (dispatched_at) WHERE status IN ('QUEUED', 'RETRYING')",
    "CREATE INDEX ON probe_state (heartbeat_at) WHERE status IN ('DEQUEUED', 'EXECUTING')",
    "CREATE INDEX ON probe_state (environment_id) WHERE status = 'PENDING_VERSION'",
    "CREATE INDEX ON probe_state (environment_id, admission) WHERE admission IS NOT NULL",
    "CREATE TABLE probe_attempts (LIKE attempts INCLUDING ALL)",
]
_PROBE_CLAIM = """WITH moved AS (
  UPDATE probe_state s SET status = 'EXECUTING', version = %(version)s, updated_at = now(),
    dequeued_at = coalesce(s.dequeued_at, now()), started_at = coalesce(s.started_at, now()),
    heartbeat_at = now(), locked_by = %(worker)s, attempt_count = s.attempt_count + 1
  FROM probe_records r
  WHERE s.id = %(run_id)s AND r.id = s.id AND s.status IN ('QUEUED', 'DEQUEUED', 'RETRYING')
    AND s.attempt_count = 0
    AND (s.dequeued_at IS NOT NULL OR NOT coalesce(s.ttl_expires_at <= now(), false))
    AND s.admission IS NULL
    AND NOT EXISTS (SELECT FROM queues q WHERE q.environment_id = r.environment_id
                    AND q.name = coalesce(r.queue, 'task/' || r.task_identifier) AND q.paused)
    AND r.task_identifier = ANY(%(tasks)s)
    AND (r.locked_version IS NULL OR r.locked_version = %(version)s)
  RETURNING s.id AS state_id, s.attempt_count AS attempt, s.heartbeat_at AS beat,
    s.status AS state, s.version AS state_version, s.locked_by AS holder, r.*
), opened AS (
  INSERT INTO probe_attempts (id, run_id, number, status, worker, started_at)
  SELECT %(attempt_id)s, state_id, attempt, 'EXECUTING', %(worker)s, beat FROM moved)
SELECT * FROM moved"""
_PROBE_COMPLETION = """WITH moved AS (
  UPDATE probe_state SET status = 'COMPLETED', output = %(output)s,
    output_type = 'application/json', updated_at = now(), finished_at = now(),
    heartbeat_at = NULL, duration_ms = duration_ms + 1
  WHERE id = %(run_id)s AND status IN ('EXECUTING') AND locked_by = %(worker)s
    AND concurrency_limits IS NULL AND waitpoint_id IS NULL
    AND EXISTS (SELECT FROM probe_attempts a WHERE a.run_id = %(run_id)s AND a.number = 1
                AND a.status = 'EXECUTING')
  RETURNING id, status, environment_id, concurrency_limits IS NOT NULL, waitpoint_id),
closed AS (
  UPDATE probe_attempts SET status = 'COMPLETED', updated_at = now(), completed_at = now()
  WHERE run_id = %(run_id)s AND number = 1 AND status = 'EXECUTING'
    AND EXISTS (SELECT FROM moved)
  RETURNING 1)
SELECT (SELECT count(*) FROM closed), moved.* FROM (SELECT 1) one LEFT JOIN moved ON true"""


def create_probe() -> None:
    sql("CREATE TABLE probe_records (LIKE runs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    sql("ALTER TABLE probe_records ADD PRIMARY KEY (id)")
    for name, definition in sql("SELECT indexname, indexdef FROM pg_indexes "
                                "WHERE schemaname = 'public' AND tablename = 'runs'"):
        if name not in _STATE_INDEXES:
            sql(definition.replace(f"INDEX {name} ON public.runs ",
                                   f"INDEX probe_{name} ON public.probe_records "))
    for statement in _PROBE_STATE:
        sql(statement)


def probe_client(insert: Statement, version: str, task: str) -> Client:
    """A run through the narrow-state probe: the real trigger INSERT writes the record
    (its creation context checked as the code checks it) and, in the same statement, the
    state row; the claim and the completion move the state row."""
    record, params = re.sub(r"\bruns\b", "probe_records", insert[0]), insert[1]
    record = record.replace("RETURNING probe_records.id,",
                            "RETURNING probe_records.environment_id, probe_records.id,")
    both = (f"WITH record AS ({record}) INSERT INTO probe_state (id, environment_id, "
            "created_at, status, dispatched_at, ttl_expires_at) SELECT id, environment_id, "
            "created_at, 'QUEUED', dispatched_at, ttl_expires_at FROM record RETURNING id")

    def one_run(trigger: psycopg.Connection[Any], worker: psycopg.Connection[Any]) -> None:
        run_id = "run_" + secrets.token_hex(12)
        with trigger.transaction():
            assert trigger.execute(both, {**params, "id": run_id}).fetchall()
        claimed = worker.execute(_PROBE_CLAIM, {
            "version": version, "worker": "bench-worker", "run_id": run_id, "tasks": [task],
            "attempt_id": "attempt_" + secrets.token_hex(12)}).fetchall()
        assert len(claimed) == 1, claimed
        [row] = worker.execute(_PROBE_COMPLETION, {
            "output": json.dumps({"ok": True}), "run_id": run_id, "worker": "bench-worker",
        }).fetchall()
        assert row[:2] == (1, run_id), row

    return one_run


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
    parser.add_argument("--schema", action="store_true",
                        help="also what each part of the runs schema costs, and the floor")
    args = parser.parse_args()

    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "bench.throughput_tasks")
        postgres = store_pids(env).get("postgres")
        if postgres is None:
            sys.exit("Postgres is not on this machine: its CPU cannot be read from /proc")
        sql(CREATE_DIY_TABLE)
        bench = InProcess("bench.throughput_tasks", VERSION, "postgres-cost")
        statements = run_statements(bench)
        reprise = reprise_client(*statements)
        url = db_url.replace("postgresql+psycopg", "postgresql")
        conns = [(psycopg.connect(url), psycopg.connect(url, autocommit=True))
                 for _ in range(CLIENTS)]
        cases: dict[str, tuple[Client, Callable[[], None]]] = {
            "Reprise, nobody listening": (reprise, lambda: listener(False)),
            "Reprise, a realtime listener registered": (reprise, lambda: listener(True)),
            "DIY job table": (diy_client, lambda: None),
        }
        if args.schema:
            copy_schema()
            nobody = (lambda: listener(False))
            for suffix, what in SCHEMA_COPIES.items():
                client = reprise_client(*retargeted(statements, suffix))
                cases[f"Reprise's statements, {what}"] = (client, nobody)
            create_probe()
            cases["a narrow state table beside the wide record (a probe), no trigger, "
                  "no foreign key"] = (probe_client(statements[0], VERSION, "bench-noop"), nobody)
            cases["DIY job table with three commits and an attempt row"] = (
                guaranteed_floor, lambda: None)
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
