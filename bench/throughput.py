"""Throughput: the whole run lifecycle against raw Celery and a hand-written Celery +
Postgres job table, in one run, on the same Redis, Postgres and worker shape
(docs/operations.md#performance-targets).

    .venv/bin/python bench/throughput.py            # the full table (a few minutes)
    .venv/bin/python bench/throughput.py --quick    # smaller counts, under a minute
    .venv/bin/python bench/throughput.py --record   # also append to bench/RESULTS.md

Rows:

* **Reprise**: ``POST /api/v1/tasks/bench-noop/trigger`` from 16 HTTP clients (2 api
  processes) → COMPLETED, a no-op task; completed/s from the first run created to the last
  finished.
* **Reprise replays**: each of those runs replayed (``POST /api/v1/runs/{id}/replay``, 16
  clients) → COMPLETED: accepted by the api, applied by ``reprise control``, executed by
  the worker; printed beside the trigger row as a ratio. The first 16 replays warm the
  freshly started worker and control process up, as warm-up runs do for the trigger row,
  and are not counted.
* **raw Celery**: a no-op Celery task (``acks_late``, prefetch 1, events on — the app's own
  settings), published by 16 threads; it counts itself done with one Redis INCR.
* **DIY**: 16 threads each INSERT a job row (a durable commit) and ``send_task``; the task
  UPDATEs the row to done.
* Both baselines run on kombu's stock Redis transport, as a team writing them gets it; the
  last row is raw Celery again on Reprise's (one redis-py client per channel).
* **scale-out**: the Reprise row with 1, 2 and 4 worker processes; then runs queued with
  no worker, drained by 1, 2 and 4 (the worker's own scale-out, no api load meanwhile),
  each with how busy the machine's cores, Postgres and Redis were.
* **API CPU per request**: one api process, 16 clients, CPU (``/proc/<pid>/stat``) per
  request of the bare endpoint (one INSERT on the same stack), trigger, replay and
  reschedule.

Every worker is ``celery -A workers.app worker --pool prefork --concurrency N``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.http_load import KeepAliveClient
from bench.timing_stack import (
    STOCK_KOMBU,
    append_results,
    baseline_app,
    configure,
    machine,
    now_utc,
    servers,
    start,
    start_bench_api,
    stop,
    wait_until,
)

VERSION = "throughput.1"
CLIENTS = 16
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sizes:
    runs: int
    requests: int
    scale_runs: int


FULL = Sizes(runs=2000, requests=1000, scale_runs=1000)
QUICK = Sizes(runs=300, requests=200, scale_runs=150)


def sql(statement: str, **params: Any) -> Any:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        result = session.execute(text(statement), params)
        return result.all() if result.returns_rows else []


def prepare() -> str:
    """Tables of the baselines, a dev key, and the catalogue of the bench task."""
    from bench.app import CREATE_BASELINE_TABLE
    from bench.throughput_tasks import CREATE_DIY_TABLE
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.service import create_key
    from reprise_server.workers.runtime import load_task_modules, register_version

    sql(CREATE_BASELINE_TABLE)
    sql(CREATE_DIY_TABLE)
    with transaction() as session:
        key = create_key(session, "dev")
    register_version(load_task_modules("bench.throughput_tasks"), VERSION, ["dev"])
    return key


def start_worker(env: dict[str, str], queue: str, processes: int, log: Path) -> Any:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "reprise_server.workers.app", "worker", "-Q", queue,
             "-I", "bench.throughput_tasks", "--pool", "prefork", "--concurrency",
             str(processes), "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "-n", f"bench-{secrets.token_hex(3)}@%h"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )


def closed_loop(port: int, key: str, requests: list[tuple[str, bytes]]) -> int:
    """Send ``requests`` from :data:`CLIENTS` concurrent clients; returns the errors."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    async def run() -> int:
        client = KeepAliveClient("127.0.0.1", port, headers)
        queue = iter(requests)
        errors = 0

        async def one_client() -> None:
            nonlocal errors
            for path, body in queue:
                status, detail = await client.post(path, body)
                if status != 200:
                    errors += 1
                    if errors <= 3:
                        print(f"  {path}: {status} {detail[:200]!r}", flush=True)

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        client.close()
        return errors

    return asyncio.run(run())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _tree(root: int) -> list[int]:
    """``root`` and every process below it (this machine's /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def store_pids(env: dict[str, str]) -> dict[str, int]:
    """The Postgres postmaster and the Redis server, when they run on this machine (their
    CPU is measured with the rest); nothing for servers elsewhere."""
    import redis

    pids: dict[str, int] = {}
    [(data_dir,)] = sql("SELECT current_setting('data_directory')")
    pidfile = Path(data_dir) / "postmaster.pid"
    if pidfile.exists():
        pids["postgres"] = int(pidfile.read_text().split()[0])
    info = redis.Redis.from_url(env["REPRISE_REDIS_URL"]).info("server")
    if Path(f"/proc/{info['process_id']}").exists():
        pids["redis"] = int(info["process_id"])
    return pids


class CpuMeter:
    """CPU seconds per role between :meth:`start` and :meth:`stop`. A role is a process
    and, unless it is one of ``singles``, every process below it (a worker's pool, the api's
    uvicorn workers, Postgres's backends), sampled again at the end so that a process
    started meanwhile counts from its start. ``bench`` is this process alone (the
    baselines' publishers, or Reprise's HTTP clients)."""

    def __init__(self, trees: dict[str, int], singles: dict[str, int] | None = None) -> None:
        self.roles = {**{role: (pid, True) for role, pid in trees.items()},
                      **{role: (pid, False) for role, pid in (singles or {}).items()},
                      "bench": (os.getpid(), False)}
        self.before: dict[int, float] = {}

    def _pids(self, role: str) -> list[int]:
        pid, tree = self.roles[role]
        return _tree(pid) if tree else [pid]

    def start(self) -> None:
        self.before = {}
        for role in self.roles:
            for pid in self._pids(role):
                try:
                    self.before[pid] = cpu_seconds(pid)
                except (OSError, IndexError):
                    pass

    def stop(self) -> dict[str, float]:
        spent = {}
        for role in self.roles:
            total = 0.0
            for pid in self._pids(role):
                try:
                    total += cpu_seconds(pid) - self.before.get(pid, 0.0)
                except (OSError, IndexError):
                    pass  # exited meanwhile
            spent[role] = total
        return spent


# --- the rows ---------------------------------------------------------------------------

Cpu = dict[str, float]  # ms of CPU per completed run, by role


def _meter(stores: dict[str, int], worker: Any, api: Any = None) -> CpuMeter:
    trees = {"worker": worker.pid, **({"api": api.pid} if api else {})}
    if "postgres" in stores:
        trees["postgres"] = stores["postgres"]
    singles = {"worker main": worker.pid}
    if "redis" in stores:
        singles["redis"] = stores["redis"]
    return CpuMeter(trees, singles)


def _per_run(spent: dict[str, float], completed: int) -> Cpu:
    spent = {**spent, "worker pool": spent["worker"] - spent["worker main"]}
    del spent["worker"]
    return {role: seconds * 1000 / completed for role, seconds in spent.items()}


def reprise_lifecycle(env: dict[str, str], logs: Path, key: str, runs: int,
                      processes: int, api_port: int, api: Any,
                      stores: dict[str, int]) -> tuple[float, Cpu]:
    """Completed runs per second, trigger (HTTP) to COMPLETED, and the CPU they cost."""
    from reprise_server.shared.broker import queue_names
    from reprise_server.shared.settings import get_settings

    worker = start_worker(env, queue_names(get_settings())["runs"], processes, logs / "w.log")
    try:
        body = b'{"payload": null}'
        closed_loop(api_port, key, [("/api/v1/tasks/bench-noop/trigger", body)] * CLIENTS)
        wait_until(lambda: not sql("SELECT 1 FROM runs WHERE status <> 'COMPLETED' LIMIT 1"),
                   120, "the warm-up runs")
        sql("DELETE FROM attempts; DELETE FROM runs")
        meter = _meter(stores, worker, api)
        meter.start()
        errors = closed_loop(api_port, key, [("/api/v1/tasks/bench-noop/trigger", body)] * runs)
        wait_until(lambda: sql("SELECT count(*) FROM runs WHERE status = 'COMPLETED'")[0][0]
                   >= runs - errors, 600, "every run to complete")
        spent = meter.stop()
    finally:
        stop(worker)
    [(seconds,)] = sql("SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM runs")
    return (runs - errors) / float(seconds), _per_run(spent, runs - errors)


def reprise_replays(env: dict[str, str], logs: Path, key: str, processes: int, api_port: int,
                    api: Any, stores: dict[str, int]) -> tuple[float, Cpu]:
    """Every COMPLETED run replayed over HTTP (16 clients) to COMPLETED: the replay is
    accepted by the api, applied by ``reprise control`` (the commands queue), executed by
    the worker. Completed replays per second from the first replay created to the last
    finished, and the CPU they cost (``control`` apart)."""
    from reprise_server.shared.broker import queue_names
    from reprise_server.shared.settings import get_settings

    originals = [row[0] for row in sql("SELECT id FROM runs WHERE status = 'COMPLETED' "
                                       "AND replayed_from IS NULL ORDER BY created_at")]
    worker = start_worker(env, queue_names(get_settings())["runs"], processes, logs / "rw.log")
    control = start(["reprise.cli", "control"], env, logs / "control.log")
    try:
        wait_until(lambda: "ready" in (logs / "control.log").read_text(errors="replace"), 120,
                   "the control process")
        # Warm-up, as the trigger row has: both processes booted and serving before the
        # meter starts (their boot is not the replays' cost).
        warm, originals = originals[:CLIENTS], originals[CLIENTS:]
        closed_loop(api_port, key, [(f"/api/v1/runs/{run_id}/replay", b"{}") for run_id in warm])
        wait_until(lambda: sql("SELECT count(*) FROM runs WHERE replayed_from IS NOT NULL "
                               "AND status = 'COMPLETED'")[0][0] >= len(warm),
                   120, "the warm-up replays")
        [(since,)] = sql("SELECT now()")
        meter = _meter(stores, worker, api)
        meter.roles["control"] = (control.pid, True)
        meter.start()
        errors = closed_loop(api_port, key, [(f"/api/v1/runs/{run_id}/replay", b"{}")
                                             for run_id in originals])
        done = len(originals) - errors
        wait_until(lambda: sql("SELECT count(*) FROM runs WHERE replayed_from IS NOT NULL "
                               "AND status = 'COMPLETED' AND created_at > :since",
                               since=since)[0][0] >= done, 600, "every replay to complete")
        spent = meter.stop()
    finally:
        stop(worker)
        stop(control)
    [(seconds,)] = sql("SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM runs "
                       "WHERE replayed_from IS NOT NULL AND created_at > :since", since=since)
    return done / float(seconds), _per_run(spent, done)


def reprise_drain(env: dict[str, str], logs: Path, key: str, runs: int, processes: int,
                  api_port: int, stores: dict[str, int]) -> tuple[float, Cpu]:
    """Runs queued with no worker, then drained by ``processes``: the worker's own
    scale-out, without the api's load on the same cores. Runs per second from the worker's
    start to the last finished."""
    from reprise_server.shared.broker import queue_names
    from reprise_server.shared.settings import get_settings

    sql("DELETE FROM attempts; DELETE FROM runs")
    body = b'{"payload": null}'
    closed_loop(api_port, key, [("/api/v1/tasks/bench-noop/trigger", body)] * runs)

    def completed() -> int:
        return int(sql("SELECT count(*) FROM runs WHERE status = 'COMPLETED'")[0][0])

    worker = start_worker(env, queue_names(get_settings())["runs"], processes, logs / "d.log")
    try:
        # Timed from the first run the worker started (its boot is not the drain).
        wait_until(lambda: sql("SELECT 1 FROM runs WHERE started_at IS NOT NULL LIMIT 1"),
                   120, "the worker to start a run")
        meter = _meter(stores, worker)
        meter.start()
        done_before = completed()
        wait_until(lambda: completed() >= runs, 600, "the queued runs to drain")
        spent = meter.stop()
    finally:
        stop(worker)
    [(seconds,)] = sql("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM runs")
    return runs / float(seconds), _per_run(spent, runs - done_before)


def raw_celery(env: dict[str, str], logs: Path, runs: int, processes: int,
               stores: dict[str, int], stock: bool = True) -> tuple[float, Cpu]:
    """Raw no-ops per second; ``stock``: on kombu's own Redis transport (else Reprise's)."""
    import redis

    from bench.throughput_tasks import RAW_COUNTER, RAW_NOOP
    from reprise_server.shared.broker import celery_app

    queue = f"{env['REPRISE_QUEUE_PREFIX']}.bench"
    client = redis.Redis.from_url(env["REPRISE_REDIS_URL"])
    worker = start_worker({**env, **STOCK_KOMBU} if stock else env, queue, processes,
                          logs / "raw.log")
    app = baseline_app() if stock else celery_app()

    def publish(count: int) -> None:
        with app.producer_or_acquire() as producer:
            for i in range(count):
                app.send_task(RAW_NOOP, args=[str(i)], queue=queue, producer=producer)

    try:
        client.set(RAW_COUNTER, 0)
        publish(CLIENTS)
        wait_until(lambda: int(client.get(RAW_COUNTER) or 0) == CLIENTS, 60, "raw warm-up")
        client.set(RAW_COUNTER, 0)
        meter = _meter(stores, worker)
        meter.start()
        began = time.monotonic()
        _in_threads(publish, runs)
        wait_until(lambda: int(client.get(RAW_COUNTER) or 0) >= runs, 600, "raw no-ops")
        rate = runs / (time.monotonic() - began)
        return rate, _per_run(meter.stop(), runs)
    finally:
        stop(worker)


def diy(env: dict[str, str], logs: Path, runs: int, processes: int,
        stores: dict[str, int]) -> tuple[float, Cpu]:
    import psycopg

    from bench.throughput_tasks import DIY_JOB, DIY_TABLE

    queue = f"{env['REPRISE_QUEUE_PREFIX']}.bench"
    url = env["REPRISE_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    app = baseline_app()
    worker = start_worker({**env, **STOCK_KOMBU}, queue, processes, logs / "diy.log")

    def produce(count: int) -> None:
        with psycopg.connect(url) as conn, app.producer_or_acquire() as producer:
            for _ in range(count):
                job_id = secrets.token_hex(12)
                conn.execute(f"INSERT INTO {DIY_TABLE} (id, status) VALUES (%s, 'queued')",
                             (job_id,))
                conn.commit()
                app.send_task(DIY_JOB, args=[job_id], queue=queue, producer=producer)

    def pending() -> int:
        return int(sql(f"SELECT count(*) FROM {DIY_TABLE} WHERE status <> 'done'")[0][0])

    try:
        produce(CLIENTS)
        wait_until(lambda: pending() == 0, 60, "DIY warm-up")
        sql(f"DELETE FROM {DIY_TABLE}")
        meter = _meter(stores, worker)
        meter.start()
        _in_threads(produce, runs)
        wait_until(lambda: pending() == 0, 600, "DIY jobs")
        spent = meter.stop()
    finally:
        stop(worker)
    [(seconds,)] = sql(
        f"SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM {DIY_TABLE}"
    )
    return runs / float(seconds), _per_run(spent, runs)


def _in_threads(work: Callable[[int], None], total: int) -> None:
    share = [total // CLIENTS + (1 if i < total % CLIENTS else 0) for i in range(CLIENTS)]
    threads = [threading.Thread(target=work, args=(n,)) for n in share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def api_cpu(env: dict[str, str], logs: Path, key: str, requests: int) -> dict[str, float]:
    """CPU ms per request of one api process, per route, 16 clients."""
    from reprise_server.workers.devstack import free_port

    port = free_port()
    api = start_bench_api(env, port, 1, logs / "api-cpu.log")
    try:
        source = sql("SELECT id FROM runs LIMIT 1")[0][0]
        delayed = _delayed_runs(requests + CLIENTS)
        routes: dict[str, list[tuple[str, bytes]]] = {
            "bare endpoint (one INSERT)": [("/bench/insert", b"")] * requests,
            "trigger": [("/api/v1/tasks/bench-noop/trigger", b'{"payload": null}')] * requests,
            "replay": [(f"/api/v1/runs/{source}/replay", b"")] * requests,
            "reschedule": [(f"/api/v1/runs/{run_id}/reschedule", b'{"delay": "2h"}')
                           for run_id in delayed],
        }
        result = {}
        for name, batch in routes.items():
            closed_loop(port, key, batch[:CLIENTS])  # warm-up
            before = cpu_seconds(api.pid)
            errors = closed_loop(port, key, batch[CLIENTS:CLIENTS + requests])
            result[name] = (cpu_seconds(api.pid) - before) * 1000 / requests
            if errors:
                print(f"  {name}: {errors} errors", flush=True)
        return result
    finally:
        stop(api)


def _delayed_runs(count: int) -> list[str]:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.service import AuthContext
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run

    [(project_id, env_id)] = sql(
        "SELECT e.project_id, e.id FROM environments e JOIN api_keys k "
        "ON k.environment_id = e.id LIMIT 1"
    )
    auth = AuthContext(project_id, env_id, "dev")
    with transaction() as session:
        template = trigger_run(
            session, auth, "bench-noop", None, TriggerOptions(delay="1h")
        ).run.id
    columns = [c for (c,) in sql(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'runs' AND column_name <> 'id'")]
    listed = ", ".join(f'"{c}"' for c in columns)
    rows = sql(
        f"INSERT INTO runs (id, {listed}) SELECT 'run_' || substr(md5(random()::text || "
        f"g::text), 1, 24), {listed} FROM runs, generate_series(2, :n) AS g "
        "WHERE id = :template RETURNING id", n=count, template=template,
    )
    return [template, *[r[0] for r in rows]]


def _system_cpu(name: str, spent: Cpu) -> float:
    """CPU per run of the system measured: for Reprise everything but the bench process
    (its HTTP clients stand for the users); for a baseline its publishers too."""
    return sum(ms for role, ms in spent.items()
               if role != "bench" or not name.startswith("Reprise"))


def _scale_rows(label: str, measured: dict[int, tuple[float, Cpu]]) -> list[str]:
    """Per worker-process count: runs/s, x one process, how busy the cores, Postgres and
    Redis were."""
    one = measured[1][0]
    return [
        f"| {label}, {count} worker process{'es' if count > 1 else ''} | {rate:.0f} | "
        f"{rate / one:.2f} | {_busy(rate, spent):.0f}% | "
        f"{rate * spent.get('postgres', 0) / 10:.0f}% of a core | "
        f"{rate * spent.get('redis', 0) / 10:.0f}% of a core |"
        for count, (rate, spent) in measured.items()
    ]


def _busy(rate: float, spent: Cpu) -> float:
    """How busy the machine's cores were, from the CPU every process spent per run."""
    return rate * sum(spent.values()) / 10 / (os.cpu_count() or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, under a minute")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--processes", type=int, default=4, help="worker processes (4)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    logs = Path(tempfile.mkdtemp(prefix="reprise-throughput-"))
    from reprise_server.workers.devstack import free_port

    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "bench.throughput_tasks")
        key = prepare()
        stores = store_pids(env)
        api_port = free_port()
        api = start_bench_api(env, api_port, 2, logs / "api.log")
        n = args.processes
        try:
            measured = {
                "Reprise": reprise_lifecycle(env, logs, key, sizes.runs, n, api_port, api,
                                             stores),
                "Reprise replays of those runs": reprise_replays(env, logs, key, n, api_port,
                                                                 api, stores),
                "raw Celery": raw_celery(env, logs, sizes.runs, n, stores),
                "DIY Celery + Postgres": diy(env, logs, sizes.runs, n, stores),
                "raw Celery on Reprise's Redis transport":
                    raw_celery(env, logs, sizes.runs, n, stores, stock=False),
            }
            scale = {
                count: reprise_lifecycle(env, logs, key, sizes.scale_runs, count, api_port, api,
                                         stores)
                for count in (1, 2, 4)
            }
            drain = {
                count: reprise_drain(env, logs, key, sizes.scale_runs, count, api_port, stores)
                for count in (1, 2, 4)
            }
        finally:
            stop(api)
        cpu = api_cpu(env, logs, key, sizes.requests)

    rows = {name: rate for name, (rate, _) in measured.items()}
    raw, own = rows["raw Celery"], rows["DIY Celery + Postgres"]
    roles = ["api", "worker main", "worker pool", "control", "postgres", "redis", "bench"]
    lines = [
        (f"| what ({sizes.runs} no-op runs, {CLIENTS} clients, {args.processes} worker "
         "processes) | completed/s | x raw | x DIY |"),
        "|---|---:|---:|---:|",
        *(f"| {name} | {rate:.0f} | {rate / raw:.2f} | {rate / own:.2f} |"
          for name, rate in rows.items()),
        "",
        (f"Replay → COMPLETED x trigger → COMPLETED: "
         f"{rows['Reprise replays of those runs'] / rows['Reprise']:.2f}"),
        "",
        ("| CPU ms per completed run | api | worker main | worker pool | control | postgres | "
         "redis | bench process | total |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {name} | " + " | ".join(f"{spent.get(r, 0):.2f}" for r in roles)
          + f" | {_system_cpu(name, spent):.2f} |" for name, (_, spent) in measured.items()),
        "",
        (f"| scale-out ({sizes.scale_runs} runs) | completed/s | x 1 process | machine busy | "
         "postgres | redis |"),
        "|---|---:|---:|---:|---:|---:|",
        *_scale_rows("Reprise", scale),
        *_scale_rows("drain of queued runs", drain),
        "",
        f"| API CPU per request ({sizes.requests} requests, 1 api process) | ms | x bare |",
        "|---|---:|---:|",
        *(f"| {name} | {ms:.2f} | {ms / cpu['bare endpoint (one INSERT)']:.2f} |"
          for name, ms in cpu.items()),
    ]
    print("\n".join(lines))
    if args.record:
        append_results(
            f"## Throughput (bench/throughput.py{' --quick' if args.quick else ''})\n\n"
            f"Run {now_utc()} on {machine()}; embedded durable Postgres and Redis unless "
            "URLs were set; every worker `celery -A workers.app worker --pool prefork`. "
            "Reproduce with `.venv/bin/python bench/throughput.py`.\n\n" + "\n".join(lines) + "\n"
        )


if __name__ == "__main__":
    main()
