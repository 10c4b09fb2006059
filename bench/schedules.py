"""Benchmark of the schedule sweep: what 10,000 active schedules add to a beat
sweep with nothing due, against an empty schedules table in the same run.

    .venv/bin/python bench/schedules.py             # ~1 min; embedded Postgres
    .venv/bin/python bench/schedules.py --record    # also append the results to RESULTS.md
    REPRISE_DATABASE_URL=… REPRISE_REDIS_URL=… .venv/bin/python bench/schedules.py

The sweep is the beat task's body, ``reprise.fire_due_schedules`` (a transaction, the
sweep's advisory lock, the due probe of ``ix_schedules_due``, commit). Samples alternate in
rounds so the machine's noise falls on both sides alike: empty table, then 10,000 active
schedules whose next ticks lie in the next hours (none due), then empty again. The plan of
the due probe is printed to show it is an index range scan, not a scan of the table.
"""

from __future__ import annotations

import argparse
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
    servers,
)

SCHEDULES = 10_000
BUDGET_MS = 5.0


def insert_schedules(project_id: str, env_id: str) -> None:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        session.execute(
            text(
                "INSERT INTO schedules (id, project_id, environment_id, task_identifier, type, "
                "cron, timezone, deduplication_key, user_provided_deduplication_key, active, "
                "next_tick_at, created_at, updated_at) "
                "SELECT 'sched_bench' || lpad(g::text, 6, '0'), :project, :env, 'hello-world', "
                "'IMPERATIVE', '0 * * * *', 'UTC', 'bench-' || g, true, true, "
                "now() + interval '10 minutes' + g * interval '1 second', now(), now() "
                "FROM generate_series(1, :n) AS g"
            ),
            {"project": project_id, "env": env_id, "n": SCHEDULES},
        )


def clear_schedules() -> None:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        session.execute(text("DELETE FROM schedules"))


def sweeps(samples: int) -> list[float]:
    from reprise_server.workers.sweeps import fire_due_schedules

    times = []
    for _ in range(samples):
        began = time.perf_counter()
        result = fire_due_schedules()  # the task body: its own transaction, committed
        times.append((time.perf_counter() - began) * 1000)
        assert result == {"fired": 0}, result
    return times


def due_probe_plan() -> list[str]:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction
    from reprise_server.shared.schedules.repository import _ANY_DUE

    with transaction() as session:
        compiled = _ANY_DUE.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        rows = session.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {compiled}"))
        return [row[0] for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="sweeps per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    began = time.monotonic()
    with servers() as (db_url, redis_url):
        configure(db_url, redis_url, "bench.schedules", "reprise_server.examples.tasks")
        project_id, env_id = bench_project()
        empty: list[float] = []
        loaded: list[float] = []
        plan: list[str] = []
        sweeps(20)  # the pool's connections have planned and prepared the probe once
        for round_no in range(args.rounds):
            clear_schedules()
            maintenance("VACUUM ANALYZE schedules")
            sweeps(20)  # after each change of state, before measuring
            empty += sweeps(args.samples)
            insert_schedules(project_id, env_id)
            maintenance("VACUUM ANALYZE schedules")
            sweeps(20)
            loaded += sweeps(args.samples)
            if round_no == 0:
                plan = due_probe_plan()
            print(f"round {round_no + 1}: empty {median(empty):.3f} ms, "
                  f"{SCHEDULES:,} schedules {median(loaded):.3f} ms", flush=True)
        clear_schedules()
        maintenance("VACUUM ANALYZE schedules")
        sweeps(20)
        empty += sweeps(args.samples)

    added = median(loaded) - median(empty)
    added_p90 = quantile(loaded, 0.9) - quantile(empty, 0.9)
    assert not any("Seq Scan" in line for line in plan), plan
    lines = [
        "## Schedule sweep (`bench/schedules.py`)",
        "",
        (f"Run {now_utc()} on {machine()}; embedded Postgres (durable, default config) unless "
         f"URLs were set. The beat task `reprise.fire_due_schedules` with nothing due, "
         f"{len(empty)} sweeps on an empty table and {len(loaded)} with {SCHEDULES:,} active "
         f"schedules (next ticks 10 min to 3 h ahead), alternating in {args.rounds} round(s), each side after 20 warm-up sweeps."),
        "",
        "| what | median | p90 |",
        "|---|---:|---:|",
        (f"| empty schedules table (baseline) | {median(empty):.3f} ms | "
         f"{quantile(empty, 0.9):.3f} ms |"),
        (f"| {SCHEDULES:,} active schedules, none due | {median(loaded):.3f} ms | "
         f"{quantile(loaded, 0.9):.3f} ms |"),
        (f"| added by {SCHEDULES:,} schedules (budget {BUDGET_MS:.0f} ms) | {added:+.3f} ms | "
         f"{added_p90:+.3f} ms |"),
        "",
        "The due probe with 10,000 schedules (`EXPLAIN ANALYZE`):",
        "",
        "```",
        *plan,
        "```",
    ]
    text = "\n".join(lines)
    print()
    print(text)
    print(f"\n(total {time.monotonic() - began:.0f} s)")
    if args.record:
        append_results(text)
    return 0 if added < BUDGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
