"""Benchmark of commands: accept latency of replay and reschedule, apply throughput.

    .venv/bin/python bench/commands.py [--record]     # ~2 min; embedded Postgres and Redis
    REPRISE_DATABASE_URL=… REPRISE_REDIS_URL=… .venv/bin/python bench/commands.py

Starts the stack itself: Postgres and Redis (embedded and durable, as ``reprise dev`` runs
them, or the servers the URL settings name, in a scratch database), the API under uvicorn
(``bench.app``: the real app plus a bare ``POST /bench/insert``; one process per core)
and Celery workers (``celery -A workers.app worker``, default prefork pool). ``--record``
appends the results to ``bench/RESULTS.md``.

(a) Accept latency: an open-loop client (a minimal keep-alive HTTP client, so the load
    generator costs ~0.4 ms of CPU per request) sends each request at its scheduled time,
    whatever the others are doing, and measures it from that time: a stalled server is
    not hidden by a waiting client. Per offered load (default 100/s for 4 s, then 300/s
    for 10 s): the baseline (one INSERT), replay of one run, reschedule of a different
    DELAYED run each time, each after a warm-up and once the server has worked off any
    backlog. Requests unanswered 2 s after the last was sent count as errors. No worker
    runs meanwhile, so all three see the same machine.
(b) Apply throughput: the replay commands accepted in (a) are applied by a worker
    consuming the commands queue; then the same worker configuration drains raw Celery
    no-op tasks on the same queue. Each is items done per second from the first one, over
    a window (default 4 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http_load import Latency, open_loop, run_loop
from bench.timing_stack import STOCK_KOMBU, baseline_app, servers, start_bench_api

VERSION = "bench.1"
TASK = "hello-world"


@dataclass
class Stack:
    db_url: str
    redis_url: str
    env: dict[str, str]




def configure(db_url: str, redis_url: str) -> Stack:
    env = {
        "REPRISE_MODE": "dev",
        "REPRISE_DATABASE_URL": db_url,
        "REPRISE_REDIS_URL": redis_url,
        "REPRISE_QUEUE_PREFIX": f"bench-{secrets.token_hex(3)}",
        "REPRISE_TASK_MODULES": "reprise_server.examples.tasks",
        "REPRISE_WORKER_VERSION": VERSION,
        "REPRISE_LOG_FORMAT": "text",
    }
    os.environ.update(env)
    from reprise_server.shared.settings import reset_settings_cache

    reset_settings_cache()
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return Stack(db_url, redis_url, full)


def prepare(delayed: int) -> tuple[str, str, list[str]]:
    """Schema, a dev key, the task catalogue, a run to replay and runs to reschedule."""
    from sqlalchemy import text

    from bench.app import CREATE_BASELINE_TABLE
    from reprise.registry import REGISTRY
    from reprise_server.shared.db import transaction
    from reprise_server.shared.migrations import upgrade
    from reprise_server.shared.projects.service import authenticate, create_key
    from reprise_server.shared.runs.models import Run
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run
    from reprise_server.shared.settings import get_settings
    from reprise_server.workers.runtime import load_task_modules, register_version

    upgrade(get_settings().database_url)
    with transaction() as session:
        session.execute(text(CREATE_BASELINE_TABLE))
        key = create_key(session, "dev")
    load_task_modules("reprise_server.examples.tasks")
    register_version(REGISTRY, VERSION, ["dev", "staging", "prod"])
    with transaction() as session:
        auth = authenticate(session, key)
        source = trigger_run(session, auth, TASK, {"name": "bench"}, TriggerOptions()).run.id
        template = trigger_run(session, auth, TASK, {"i": 0}, TriggerOptions(delay="1h")).run.id
        # Clone the delayed run in SQL: creating thousands through the service is slow.
        columns = [c.name for c in Run.__table__.columns if c.name != "id"]
        listed = ", ".join(f'"{c}"' for c in columns)
        ids = list(session.scalars(text(
            f'INSERT INTO runs (id, {listed}) '
            f"SELECT 'run_' || substr(md5(random()::text || g::text), 1, 24), {listed} "
            f"FROM runs, generate_series(2, :n) AS g WHERE id = :template RETURNING id"
        ), {"n": delayed, "template": template}))
    return key, source, [template, *ids]


def start_api(stack: Stack, port: int, workers: int) -> subprocess.Popen[bytes]:
    return start_bench_api(stack.env, port, workers)


def start_worker(stack: Stack, queue: str, stock: bool = False) -> subprocess.Popen[bytes]:
    """The commands worker; ``stock``: on kombu's own Redis transport (the baseline)."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "reprise_server.workers.app", "worker", "-Q", queue,
         "-I", "bench.noop_tasks", "--loglevel", "WARNING", "-n", f"bench-{secrets.token_hex(3)}@%h",
         "--without-gossip", "--without-mingle"],
        cwd=ROOT, env={**stack.env, **STOCK_KOMBU} if stock else stack.env,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- (a) accept latency ---------------------------------------------------------------


ROUTES = ("baseline (one INSERT)", "replay", "reschedule")


def settle(port: int, timeout: float = 20.0) -> None:
    """Wait until the server has worked off any backlog of the previous run (three bare
    requests in a row answered within 50 ms)."""
    import httpx

    deadline = time.monotonic() + timeout
    fast = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as client:
        while fast < 3 and time.monotonic() < deadline:
            began = time.perf_counter()
            client.post("/bench/insert")
            fast = fast + 1 if time.perf_counter() - began < 0.05 else 0
            time.sleep(0.05)


def measure_accept(port: int, key: str, source: str, delayed: list[str],
                   loads: list[tuple[float, float]]) -> list[tuple[float, list[Latency]]]:
    """Per offered load ``(rate, seconds)``: the baseline, replay and reschedule, each after
    a one-second warm-up at the same rate. Each reschedule moves a different DELAYED run."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    runs = iter(delayed)

    def request_for(route: str) -> Callable[[int], tuple[str, Any]]:
        if route == "replay":
            return lambda i: (f"/api/v1/runs/{source}/replay", None)
        if route == "reschedule":
            return lambda i: (f"/api/v1/runs/{next(runs)}/reschedule", {"delay": "2h"})
        return lambda i: ("/bench/insert", None)

    results = []
    for rate, seconds in loads:
        rows = []
        for route in ROUTES:
            settle(port)
            run_loop(open_loop(port, request_for(route), headers, rate, 0.5, f"{route} warm-up"))
            rows.append(run_loop(open_loop(port, request_for(route), headers, rate, seconds, route)))
            print(f"  {rate:g}/s {rows[-1]}", flush=True)
        results.append((rate, rows))
    return results


# --- (b) apply throughput ---------------------------------------------------------------


def pending_commands() -> int:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        return int(session.execute(
            text("SELECT count(*) FROM commands WHERE status = 'PENDING'")).scalar_one())


def timed_drain(remaining: Callable[[], int], total: int, window: float) -> tuple[int, float]:
    """Items done per second, from the first item done, over ``window`` seconds or until
    none is left; returns ``(items, rate)``."""
    first: float | None = None
    at_first = total
    deadline = time.monotonic() + 120
    while True:
        left = remaining()
        now = time.monotonic()
        if first is None and left < total:
            first, at_first = now, left
        if first is not None and (left == 0 or now - first >= window):
            done = at_first - left
            return done, done / max(now - first, 1e-6)
        if now > deadline:
            raise SystemExit(f"nothing done in time: {left} of {total} left")
        time.sleep(0.005)


def measure_apply(stack: Stack, queue: str, window: float) -> tuple[int, float]:
    total = pending_commands()
    worker = start_worker(stack, queue)
    try:
        return timed_drain(pending_commands, total, window)
    finally:
        stop(worker)


def measure_noop(stack: Stack, queue: str, count: int, window: float) -> tuple[int, float]:
    import redis

    from bench.noop_tasks import NOOP

    app = baseline_app()
    with app.producer_or_acquire() as producer:
        for i in range(count):
            app.send_task(NOOP, args=[str(i)], queue=queue, producer=producer)
    client = redis.Redis.from_url(stack.redis_url)

    def remaining() -> int:
        return int(client.llen(queue)) + int(client.hlen("unacked"))

    worker = start_worker(stack, queue, stock=True)
    try:
        return timed_drain(remaining, count, window)
    finally:
        stop(worker)
        client.delete(queue)
        client.close()


def _loads(text: str) -> list[tuple[float, float]]:
    """``300x10,100x5``: offered loads as (requests per second, seconds)."""
    loads = []
    for part in text.split(","):
        rate, _, seconds = part.partition("x")
        loads.append((float(rate), float(seconds or 10)))
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=_loads, default=_loads("100x4,300x10"),
                        help="offered loads, rate x seconds (default 100x4,300x10)")
    parser.add_argument("--api-workers", type=int, default=os.cpu_count() or 1,
                        help="uvicorn processes (default: one per core)")
    parser.add_argument("--window", type=float, default=4.0,
                        help="seconds of applying measured (default 4)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    external = os.environ.get("REPRISE_DATABASE_URL") and os.environ.get("REPRISE_REDIS_URL")
    where = "external Postgres and Redis" if external else "embedded Postgres (durable) and Redis"

    with servers() as (db_url, redis_url):
        stack = configure(db_url, redis_url)
        from reprise_server.shared.broker import queue_names
        from reprise_server.shared.settings import get_settings
        from reprise_server.workers.devstack import free_port

        commands_queue = queue_names(get_settings())["commands"]
        needed = sum(int(rate * (seconds + 0.5)) for rate, seconds in args.loads) + 10
        key, source, delayed = prepare(needed)
        port = args.port or free_port()
        api = start_api(stack, port, args.api_workers)
        try:
            latencies = measure_accept(port, key, source, delayed, args.loads)
        finally:
            stop(api)
        from reprise_server.shared.commands.publisher import PUBLISHER

        PUBLISHER.flush()
        applied = measure_apply(stack, commands_queue, args.window)
        noop = measure_noop(stack, commands_queue, max(applied[0] * 2, 2000), args.window)
        section = report(latencies, applied, noop, where, os.getloadavg(), args.api_workers)
        print(section)
        if args.record:
            from bench.timing_stack import append_results

            append_results(section)


def report(latencies: list[tuple[float, list[Latency]]], applied: tuple[int, float],
           noop: tuple[int, float], where: str, load: tuple[float, float, float],
           api_workers: int) -> str:
    lines = [
        "## Commands (`bench/commands.py`)",
        "",
        (f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python "
         f"{platform.python_version()}, {where}; load average at the end "
         f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}."),
        "",
        ("(a) Accept latency: open loop (each request sent at its scheduled time, latency "
         f"from that time), uvicorn with {api_workers} process(es); ratio = route / baseline "
         "at the same load."),
        "",
        ("| offered load | route | requests | errors | achieved req/s | p50 ms | p99 ms "
        "| p50 ratio | p99 ratio |"),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate, rows in latencies:
        baseline = rows[0]
        for row in rows:
            lines.append(
                f"| {rate:g}/s | {row.name} | {row.sent} | {row.errors} "
                f"| {row.achieved_rate:.0f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} "
                f"| {row.p50_ms / baseline.p50_ms:.2f} | {row.p99_ms / baseline.p99_ms:.2f} |"
            )
    lines += [
        "",
        ("(b) Apply throughput: `celery -A workers.app worker -Q <prefix>.commands` (default "
         "prefork pool), items done per second from the first one, over the window."),
        "",
        "| what | items timed | per second | ratio |",
        "|---|---:|---:|---:|",
        (f"| apply replay commands (`reprise.apply_command`) | {applied[0]} | {applied[1]:.0f} "
         f"| {applied[1] / noop[1]:.2f} |"),
        (f"| raw Celery no-op tasks, same worker and queue (baseline) | {noop[0]} "
         f"| {noop[1]:.0f} | 1.00 |"),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
