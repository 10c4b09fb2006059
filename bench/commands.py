"""Benchmark of commands (§14): accept latency of replay and reschedule, apply throughput.

    .venv/bin/python bench/commands.py            # ~90 s; embedded Postgres and Redis
    REPRISE_DATABASE_URL=… REPRISE_REDIS_URL=… .venv/bin/python bench/commands.py

Starts the stack itself: Postgres and Redis (embedded, durable as ``reprise dev`` runs
them, or the servers the URL settings name, in a scratch database), the API under uvicorn
(``bench.app``: the real app plus a bare ``POST /bench/insert``) and Celery workers
(``celery -A workers worker``, default prefork pool and concurrency).

(a) Accept latency: an open-loop client sends requests at a fixed rate (300/s for 10 s
    per route, each request at its scheduled time whatever the others are doing) and
    measures each from its scheduled start, so a stalled server is not hidden by a
    waiting client. Routes: the baseline (one INSERT), replay of one run, reschedule of a
    different DELAYED run each time. No worker runs meanwhile, so the baseline and the
    routes see the same idle machine.
(b) Apply throughput: the commands accepted in (a) plus more are applied by a worker
    consuming the commands queue, timed from the first applied to the last; then the
    same worker configuration drains as many raw Celery no-op tasks on the same queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VERSION = "bench.1"
TASK = "hello-world"


@dataclass
class Stack:
    db_url: str
    redis_url: str
    env: dict[str, str]


@contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """Postgres and Redis: the configured servers (a scratch database), else embedded."""
    db_url = os.environ.get("REPRISE_DATABASE_URL")
    redis_url = os.environ.get("REPRISE_REDIS_URL")
    if db_url and redis_url:
        import psycopg

        from shared.settings import normalise_database_url

        name = f"reprise_bench_{secrets.token_hex(4)}"
        base = normalise_database_url(db_url)
        admin = base.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.rsplit("/", 1)[0] + f"/{name}", redis_url
        finally:
            from shared.db import dispose_engines

            dispose_engines()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    from shared.devstack import EmbeddedPostgres, EmbeddedRedis

    root = Path(tempfile.mkdtemp(prefix="reprise-bench-"))
    postgres, redis = EmbeddedPostgres(root / "pg"), EmbeddedRedis(root / "redis")
    try:
        yield postgres.start(), redis.start()
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def configure(db_url: str, redis_url: str) -> Stack:
    env = {
        "REPRISE_MODE": "dev",
        "REPRISE_DATABASE_URL": db_url,
        "REPRISE_REDIS_URL": redis_url,
        "REPRISE_QUEUE_PREFIX": f"bench-{secrets.token_hex(3)}",
        "REPRISE_TASK_MODULES": "examples.tasks",
        "REPRISE_WORKER_VERSION": VERSION,
        "REPRISE_LOG_FORMAT": "text",
    }
    os.environ.update(env)
    from shared.settings import reset_settings_cache

    reset_settings_cache()
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return Stack(db_url, redis_url, full)


def prepare(delayed: int) -> tuple[str, str, list[str]]:
    """Schema, a dev key, the task catalogue, a run to replay and runs to reschedule."""
    from sqlalchemy import text

    from bench.app import CREATE_BASELINE_TABLE
    from reprise.registry import REGISTRY
    from shared.db import transaction
    from shared.migrations import upgrade
    from shared.projects.service import authenticate, create_key
    from shared.runs.models import Run
    from shared.runs.schemas import TriggerOptions
    from shared.runs.service import trigger_run
    from shared.settings import get_settings
    from workers.runtime import load_task_modules, register_version

    upgrade(get_settings().database_url)
    with transaction() as session:
        session.execute(text(CREATE_BASELINE_TABLE))
        key = create_key(session, "dev")
    load_task_modules("examples.tasks")
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


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_api(stack: Stack, port: int) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "bench.app:create_bench_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        cwd=ROOT, env=stack.env,
    )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, "the API")
    return proc


def start_worker(stack: Stack, queue: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queue,
         "-I", "bench.noop_tasks", "--loglevel", "WARNING", "-n", f"bench-{secrets.token_hex(3)}@%h",
         "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=stack.env,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- (a) accept latency ---------------------------------------------------------------


@dataclass
class Latency:
    name: str
    sent: int
    errors: int
    p50_ms: float
    p99_ms: float
    achieved_rate: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _open_loop(
    base: str, request: Callable[[int], tuple[str, Any]], headers: dict[str, str],
    rate: float, seconds: float, name: str,
) -> Latency:
    import httpx

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(10, pool=None)) as client:
        loop = asyncio.get_running_loop()
        count = int(rate * seconds)
        start = loop.time() + 0.05

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            path, body = request(i)
            try:
                response = await client.post(path, json=body)
                status, detail = response.status_code, response.text[:200]
            except httpx.HTTPError as exc:
                status, detail = 0, repr(exc)
            latencies.append(loop.time() - scheduled)
            if status != 200:
                errors += 1
                if errors <= 3:
                    print(f"  {name}: {status} {detail}", flush=True)

        pending = []
        for i in range(count):
            scheduled = start + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*pending)
        elapsed = loop.time() - start
    return Latency(name, count, errors, _percentile(latencies, 0.5) * 1000,
                   _percentile(latencies, 0.99) * 1000, count / elapsed)


def measure_accept(port: int, key: str, source: str, delayed: list[str], rate: float,
                   seconds: float) -> list[Latency]:
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    warm = iter(delayed[int(rate * seconds):])
    timed = iter(delayed[: int(rate * seconds)])
    routes: dict[str, Callable[[int], tuple[str, Any]]] = {
        "baseline (one INSERT)": lambda i: ("/bench/insert", None),
        "replay": lambda i: (f"/api/v1/runs/{source}/replay", None),
    }

    def reschedule(it: Iterator[str]) -> Callable[[int], tuple[str, Any]]:
        return lambda i: (f"/api/v1/runs/{next(it)}/reschedule", {"delay": "2h"})

    results = []
    for name, request in [*routes.items(), ("reschedule", None)]:
        warmup = reschedule(warm) if request is None else request
        asyncio.run(_open_loop(base, warmup, headers, rate, 1.0, f"{name} warm-up"))
        timed_request = reschedule(timed) if request is None else request
        results.append(asyncio.run(_open_loop(base, timed_request, headers, rate, seconds, name)))
        print(f"  {results[-1]}", flush=True)
    return results


# --- (b) apply throughput ---------------------------------------------------------------


def pending_commands() -> int:
    from sqlalchemy import text

    from shared.db import transaction

    with transaction() as session:
        return int(session.execute(
            text("SELECT count(*) FROM commands WHERE status = 'PENDING'")).scalar_one())


def add_replays(source: str, key: str, count: int) -> None:
    from shared.commands.schemas import ReplayRequest
    from shared.commands.service import accept_replay
    from shared.db import transaction

    with transaction() as session:
        for _ in range(count):
            accept_replay(session, key, source, ReplayRequest())


def timed_drain(remaining: Callable[[], int], total: int, timeout: float) -> float:
    """Items per second from the first item done to the last."""
    first: float | None = None
    deadline = time.monotonic() + timeout
    while True:
        left = remaining()
        now = time.monotonic()
        if first is None and left < total:
            first = now
        if left == 0:
            assert first is not None
            return (total - 1) / max(now - first, 1e-6)
        if now > deadline:
            raise SystemExit(f"drain timed out with {left} of {total} left")
        time.sleep(0.005)


def measure_apply(stack: Stack, queue: str) -> float:
    total = pending_commands()
    worker = start_worker(stack, queue)
    try:
        return timed_drain(pending_commands, total, 120)
    finally:
        stop(worker)


def measure_noop(stack: Stack, queue: str, count: int) -> float:
    import redis

    from bench.noop_tasks import NOOP
    from shared.broker import celery_app

    app = celery_app()
    with app.producer_or_acquire() as producer:
        for i in range(count):
            app.send_task(NOOP, args=[str(i)], queue=queue, producer=producer)
    client = redis.Redis.from_url(stack.redis_url)

    def remaining() -> int:
        return int(client.llen(queue)) + int(client.hlen("unacked"))

    worker = start_worker(stack, queue)
    try:
        return timed_drain(remaining, count, 120)
    finally:
        stop(worker)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--extra-commands", type=int, default=5000)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    external = os.environ.get("REPRISE_DATABASE_URL") and os.environ.get("REPRISE_REDIS_URL")
    where = "external Postgres and Redis" if external else "embedded Postgres (durable) and Redis"

    with servers() as (db_url, redis_url):
        stack = configure(db_url, redis_url)
        from shared.broker import queue_names
        from shared.devstack import free_port
        from shared.settings import get_settings

        commands_queue = queue_names(get_settings())["commands"]
        needed = int(args.rate * (args.seconds + 1)) + 10
        began = time.monotonic()
        key, source, delayed = prepare(needed)
        print(f"prepared in {time.monotonic() - began:.1f}s", flush=True)
        port = args.port or free_port()
        api = start_api(stack, port)
        try:
            latencies = measure_accept(port, key, source, delayed, args.rate, args.seconds)
        finally:
            stop(api)
        add_replays(source, key, args.extra_commands)
        applies = pending_commands()
        apply_rate = measure_apply(stack, commands_queue)
        noop_rate = measure_noop(stack, commands_queue, applies)
        load = os.getloadavg()
        section = report(latencies, args.rate, apply_rate, noop_rate, applies, where, load)
        print(section)
        if args.record:
            from bench.timing_stack import append_results

            append_results(section)


def report(latencies: list[Latency], rate: float, apply_rate: float, noop_rate: float,
           applies: int, where: str, load: tuple[float, float, float]) -> str:
    baseline = latencies[0]
    lines = [
        "## Commands (`bench/commands.py`)",
        "",
        (f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {where}; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}."),
        "",
        (f"(a) Accept latency, open loop at {rate:g} req/s for {baselines_seconds(baseline, rate)} s "
        "per route, measured from each request's scheduled start; uvicorn, one process."),
        "",
        "| route | requests | errors | achieved req/s | p50 ms | p99 ms | p50 ratio | p99 ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in latencies:
        lines.append(
            f"| {row.name} | {row.sent} | {row.errors} | {row.achieved_rate:.0f} "
            f"| {row.p50_ms:.2f} | {row.p99_ms:.2f} | {row.p50_ms / baseline.p50_ms:.2f} "
            f"| {row.p99_ms / baseline.p99_ms:.2f} |"
        )
    lines += [
        "",
        ("(b) Apply throughput: `celery -A workers worker -Q <prefix>.commands` (default prefork "
        "pool), from the first item done to the last."),
        "",
        "| what | items | per second | ratio |",
        "|---|---:|---:|---:|",
        (f"| apply replay commands (`reprise.apply_command`) | {applies} | {apply_rate:.0f} "
        f"| {apply_rate / noop_rate:.2f} |"),
        (f"| raw Celery no-op tasks, same worker and queue (baseline) | {applies} "
        f"| {noop_rate:.0f} | 1.00 |"),
    ]
    return "\n".join(lines) + "\n"


def baselines_seconds(row: Latency, rate: float) -> str:
    return f"{row.sent / rate:g}"


if __name__ == "__main__":
    main()
