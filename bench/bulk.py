"""Benchmark of bulk replay: 10,000 runs replayed by one bulk action with a filter,
against 10,000 single replays of the same runs, on the same stack.

    .venv/bin/python bench/bulk.py [--runs 10000] [--record]   # ~2 min; embedded servers

The stack is :mod:`bench.timing_stack`'s: Postgres and Redis (embedded and durable, or
the servers the URL settings name, in a scratch database), the API under uvicorn (two
processes) and one ``reprise control`` (the process that applies replay commands and
works through bulk actions). No worker runs: the new runs stay QUEUED, so both sides
measure replay itself, from the first request until the last new run exists.

(a) Single replays: a closed loop of 32 concurrent keep-alive clients sends
    ``POST /api/v1/runs/{id}/replay`` once per FAILED run; the control process applies the
    commands as they come. Throughput = runs / (first request → last replay applied).
(b) Bulk replay: ``POST /api/v1/bulk-actions {action: replay, filter: {status: FAILED,
    taskIdentifier}}``; throughput = runs / (request → the action COMPLETED).
The figure is (b) / (a); the target (docs/operations.md#performance-targets) is at least 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http_load import KeepAliveClient
from bench.timing_stack import (
    append_results,
    bench_project,
    configure,
    machine,
    now_utc,
    servers,
    start,
    start_bench_api,
    stop,
    wait_until,
)

VERSION = "bench.bulk.1"
TASK = "hello-world"
PORT = 8791
CLIENTS = 32


def prepare(count: int) -> tuple[str, list[str]]:
    """A dev key, the task catalogue, and ``count`` FAILED runs (cloned in SQL)."""
    from sqlalchemy import text

    from reprise.registry import REGISTRY
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.service import authenticate, create_key
    from reprise_server.shared.runs.models import Run
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run
    from reprise_server.workers.runtime import load_task_modules, register_version

    bench_project()
    with transaction() as session:
        key = create_key(session, "dev", "bench")
    load_task_modules("reprise_server.examples.tasks")
    register_version(REGISTRY, VERSION, ["dev", "staging", "prod"])
    with transaction() as session:
        auth = authenticate(session, key)
        template = trigger_run(session, auth, TASK, {"name": "bench"}, TriggerOptions()).run.id
        session.execute(text("UPDATE runs SET status = 'FAILED', finished_at = now() "
                             "WHERE id = :id"), {"id": template})
        columns = [c.name for c in Run.__table__.columns if c.name != "id"]
        listed = ", ".join(f'"{c}"' for c in columns)
        ids = list(session.scalars(text(
            f"INSERT INTO runs (id, {listed}) "
            f"SELECT 'run_' || substr(md5(random()::text || g::text), 1, 24), {listed} "
            f"FROM runs, generate_series(2, :n) AS g WHERE id = :template RETURNING id"
        ), {"n": count, "template": template}))
    return key, [template, *ids]


def _scalar(sql: str, **params: object) -> int:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        return int(session.execute(text(sql), params).scalar_one())


def replays_made() -> int:
    return _scalar("SELECT count(*) FROM runs WHERE replayed_from IS NOT NULL")


async def _single_replays(key: str, run_ids: list[str]) -> int:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    todo = iter(run_ids)
    errors = 0

    async def client_loop() -> None:
        nonlocal errors
        client = KeepAliveClient("127.0.0.1", PORT, headers)
        try:
            for run_id in todo:
                status, body = await client.post(f"/api/v1/runs/{run_id}/replay", b"")
                if status != 200:
                    errors += 1
                    if errors <= 3:
                        print(f"  replay: {status} {body[:200]!r}", flush=True)
        finally:
            client.close()

    await asyncio.gather(*(client_loop() for _ in range(CLIENTS)))
    return errors


def measure_singles(key: str, run_ids: list[str]) -> float:
    before = replays_made()
    began = time.perf_counter()
    errors = asyncio.run(_single_replays(key, run_ids))
    sent = time.perf_counter() - began
    wait_until(lambda: replays_made() - before >= len(run_ids) - errors, 600,
               "the single replays to be applied")
    elapsed = time.perf_counter() - began
    print(f"  singles: {len(run_ids)} in {elapsed:.1f}s (requests sent in {sent:.1f}s, "
          f"{errors} errors)", flush=True)
    return len(run_ids) / elapsed


def measure_bulk(key: str, count: int) -> float:
    import httpx

    before = replays_made()
    began = time.perf_counter()
    response = httpx.post(
        f"http://127.0.0.1:{PORT}/api/v1/bulk-actions",
        headers={"authorization": f"Bearer {key}"},
        json={"action": "replay", "name": "bench",
              "filter": {"status": "FAILED", "taskIdentifier": TASK}},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    bulk_id = response.json()["id"]
    wait_until(lambda: _scalar("SELECT count(*) FROM bulk_actions WHERE id = :id AND "
                               "status = 'COMPLETED'", id=bulk_id) == 1, 600, "the bulk replay")
    elapsed = time.perf_counter() - began
    made = replays_made() - before
    assert made == count, f"the bulk replay made {made} runs, not {count}"
    print(f"  bulk:    {count} in {elapsed:.1f}s", flush=True)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    log = Path(tempfile.mkstemp(prefix="reprise-bench-bulk-", suffix=".log")[1])
    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "reprise_server.examples.tasks")
        key, run_ids = prepare(args.runs)
        api = start_bench_api(env, PORT, 2, log)
        control = start(["reprise.cli", "control"], env, log)
        try:
            singles = measure_singles(key, run_ids)
            bulk = measure_bulk(key, args.runs)
        finally:
            stop(control)
            stop(api)
    ratio = bulk / singles
    print(f"bulk replay {bulk:.0f} runs/s, single replays {singles:.0f} runs/s: "
          f"{ratio:.2f}x (target >= 0.8x)")
    if args.record:
        append_results(
            f"## Bulk replay by filter vs single replays ({now_utc()})\n\n"
            f"Machine: {machine()}. Command: `.venv/bin/python bench/bulk.py --runs "
            f"{args.runs} --record` (embedded Postgres and Redis, 2 api processes, one "
            f"`reprise control`, no worker).\n\n"
            "| what | runs | runs/s |\n|---|---|---|\n"
            f"| {args.runs} single replays (HTTP, 32 clients, applied by control) | "
            f"{args.runs} | {singles:.0f} |\n"
            f"| one bulk replay by filter (batches of 500 on control) | {args.runs} | "
            f"{bulk:.0f} |\n\n"
            f"Bulk / single: **{ratio:.2f}x** (target >= 0.8x).\n"
        )
    print(json.dumps({"bulk_runs_per_s": bulk, "single_runs_per_s": singles, "ratio": ratio}))


if __name__ == "__main__":
    main()
