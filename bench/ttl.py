"""Benchmark of the TTL sweep: expirations per second and the cost of an empty sweep.

    .venv/bin/python bench/ttl.py                # ~3 min; embedded Postgres
    .venv/bin/python bench/ttl.py --record       # also append the results to RESULTS.md
    REPRISE_DATABASE_URL=… REPRISE_REDIS_URL=… .venv/bin/python bench/ttl.py

2,000,000 runs are bulk-inserted with SQL: 1,000,000 QUEUED whose TTL passed (each with
its own expiry time), 500,000 QUEUED whose TTL has not passed (they sit in the same
partial index), 500,000 COMPLETED. Then, each after ``VACUUM`` and ``CHECKPOINT``:

* baseline: a plain ``UPDATE`` of the same 1,000,000 rows to the same values, by primary
  key range in batches of the same size, in one transaction (rolled back);
* the sweep: what beat's ``reprise.expire_stale_runs`` runs (advisory lock, then
  :func:`shared.ttl.service.expire_stale_runs` until none is left), one transaction;
* an empty sweep, 50 times (median and p90), right after the big one and after a vacuum,
  beside a ``SELECT 1`` transaction on the same connection pool.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing_stack import (
    append_results,
    bench_project,
    configure,
    machine,
    maintenance,
    median,
    now_utc,
    quantile,
    runs_insert_sql,
    servers,
)

STALE = 1_000_000
FRESH = 500_000
DONE = 500_000
CHUNK = 250_000


def run_id(n: int) -> str:
    return f"run_benchttl{n:09d}"


def insert_runs(project_id: str, env_id: str) -> float:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    rows = (
        "SELECT 'run_benchttl' || lpad(g::text, 9, '0') AS id, "
        "CASE WHEN g <= :stale + :fresh THEN 'QUEUED' ELSE 'COMPLETED' END AS status, "
        "NULL::timestamptz AS delayed_until, 0::bigint AS schedule_token, "
        "now() - interval '2 hours' AS queued_at, 600 AS ttl_seconds, "
        "CASE WHEN g <= :stale THEN now() - interval '1 hour' + g * interval '1 millisecond' "
        "     WHEN g <= :stale + :fresh THEN now() + interval '1 hour' + g * interval '1 millisecond' "
        "END AS ttl_expires_at "
        "FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) AS g"
    )
    began = time.perf_counter()
    total = STALE + FRESH + DONE
    for lo in range(1, total + 1, CHUNK):
        with transaction() as session:
            session.execute(
                text(runs_insert_sql(rows)),
                {"project": project_id, "env": env_id, "lo": lo, "hi": lo + CHUNK - 1,
                 "stale": STALE, "fresh": FRESH},
            )
        print(f"  inserted {lo + CHUNK - 1:,} runs", flush=True)
    return time.perf_counter() - began


def baseline_update(batch: int) -> float:
    """The same rows to the same values by primary-key range: no selection, no locking."""
    from sqlalchemy import text

    from reprise_server.shared.db import session_factory
    from reprise_server.shared.runs.lifecycle import EXPIRED_MESSAGE

    session = session_factory()()
    began = time.perf_counter()
    try:
        for lo in range(1, STALE + 1, batch):
            session.execute(
                text("UPDATE runs SET status = 'EXPIRED', updated_at = now(), "
                     "expired_at = now(), finished_at = now(), "
                     "error = CAST(:error AS jsonb), schedule_token = schedule_token + 1 "
                     "WHERE id BETWEEN :lo AND :hi"),
                {"lo": run_id(lo), "hi": run_id(min(lo + batch - 1, STALE)),
                 "error": json.dumps({"message": EXPIRED_MESSAGE})},
            )
        return time.perf_counter() - began
    finally:
        session.rollback()
        session.close()


def timed_sweep() -> tuple[float, dict[str, int]]:
    from reprise_server.workers.sweeps import expire_stale_runs

    began = time.perf_counter()
    result = expire_stale_runs()  # the task body: its own transaction, committed
    return time.perf_counter() - began, result


def empty_sweeps(samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        elapsed, result = timed_sweep()
        assert result == {"expired": 0}, result
        times.append(elapsed * 1000)
    return times


def select_one(samples: int) -> list[float]:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    times = []
    for _ in range(samples):
        began = time.perf_counter()
        with transaction() as session:
            session.execute(text("SELECT 1"))
        times.append((time.perf_counter() - began) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    began = time.monotonic()
    with servers() as (db_url, redis_url):
        configure(db_url, redis_url, "bench.ttl", "reprise_server.examples.tasks")
        from reprise_server.shared.settings import get_settings

        batch = get_settings().ttl_sweep_batch_size
        project_id, env_id = bench_project()
        print("inserting 2,000,000 runs…", flush=True)
        insert_s = insert_runs(project_id, env_id)
        maintenance("VACUUM ANALYZE runs", "CHECKPOINT")

        base_s = baseline_update(batch)
        print(f"baseline UPDATE of {STALE:,} rows: {base_s:.1f} s", flush=True)
        maintenance("VACUUM ANALYZE runs", "CHECKPOINT")

        sweep_s, result = timed_sweep()
        assert result == {"expired": STALE}, result
        print(f"sweep expired {STALE:,} runs: {sweep_s:.1f} s", flush=True)

        hot = empty_sweeps(args.samples)
        maintenance("VACUUM ANALYZE runs")
        empty_sweeps(5)  # the pool's connections have planned and prepared it once
        cold = empty_sweeps(args.samples)
        select_one(5)
        floor = select_one(args.samples)

    rate, base_rate = STALE / sweep_s, STALE / base_s
    lines = [
        "## TTL sweep (`bench/ttl.py`)",
        "",
        (f"Run {now_utc()} on {machine()}; embedded Postgres (durable, default config) unless "
        f"URLs were set. 2,000,000 runs (bulk insert {insert_s:.0f} s): 1,000,000 QUEUED past "
        f"their TTL, 500,000 QUEUED not yet due, 500,000 COMPLETED; batch size {batch}."),
        "",
        "| what | figure | baseline | ratio |",
        "|---|---:|---:|---:|",
        (f"| expire 1,000,000 stale runs (`reprise.expire_stale_runs`, one transaction) | "
        f"{rate:,.0f} /s ({sweep_s:.1f} s) | plain UPDATE of the same rows by key range: "
        f"{base_rate:,.0f} /s ({base_s:.1f} s) | {rate / base_rate:.2f} |"),
        (f"| empty sweep after vacuum, median (p90) of {args.samples} | "
        f"{median(cold):.2f} ms ({quantile(cold, 0.9):.2f}) | `SELECT 1` transaction: "
        f"{median(floor):.2f} ms ({quantile(floor, 0.9):.2f}) | "
        f"{median(cold) / median(floor):.1f} |"),
        (f"| empty sweep right after the 1,000,000 expiries, before any vacuum | "
        f"{median(hot):.2f} ms ({quantile(hot, 0.9):.2f}) | | |"),
    ]
    text = "\n".join(lines)
    print()
    print(text)
    print(f"\n(total {time.monotonic() - began:.0f} s)")
    if args.record:
        append_results(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
