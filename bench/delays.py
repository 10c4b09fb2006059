"""Benchmark of delayed promotion: lateness and worker memory with N pending runs.

    .venv/bin/python bench/delays.py             # ~2 min; embedded Postgres and Redis
    .venv/bin/python bench/delays.py --record    # also append the results to RESULTS.md
    REPRISE_DATABASE_URL=… REPRISE_REDIS_URL=… .venv/bin/python bench/delays.py

Starts a real worker (``celery -A workers.app worker``, prefork, ``worker_concurrency``
processes, plus the baseline task of ``bench.timer_probe``) and a real beat
(``celery -A workers.app beat``), with the project's default settings (horizon 300 s, sweep
every 2 s, visibility timeout 3600 s).

For N = 1k, 10k, 100k pending delayed runs (bulk-inserted with SQL, due between 10 min
and 4 h from now, so none enters the horizon during the run), a stream of runs due in the
next seconds is triggered through the real path (``shared.runs.service.create_run``: the
insert, then a timer armed after commit), and beside it, at the same moments and with the
same delays, plain Celery ``countdown`` tasks go to the same queue of the same worker.
Reported: promotion lateness (``queued_at - delayed_until``, database clock) and the
countdown tasks' lateness (start - intended time), p50/p99/max; the worker's RSS (main
process + pool children, psutil) after each stream; the DB cost of one sweep.

Finally, the contrast the horizon avoids: the same worker is sent 10k countdown tasks due
in 2 h (what arming every delayed run at trigger would do) and its RSS is measured again.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    start,
    stop,
    wait_until,
)

VERSION = "bench.delays"
TASK = "hello-world"


@dataclass
class Phase:
    pending: int
    armed: int
    promote_p50: float
    promote_p99: float
    promote_max: float
    countdown_p50: float
    countdown_p99: float
    countdown_max: float
    rss_total_mb: float
    rss_main_mb: float
    sweep_ms: float


def worker_rss(pid: int) -> tuple[float, float]:
    import psutil

    main = psutil.Process(pid)
    total = main.memory_info().rss + sum(
        child.memory_info().rss for child in main.children(recursive=True)
    )
    return total / 2**20, main.memory_info().rss / 2**20


def insert_far_future(project_id: str, env_id: str, start_at: int, count: int) -> None:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    rows = (
        "SELECT 'run_benchdelay' || lpad(g::text, 9, '0') AS id, 'DELAYED' AS status, "
        "now() + interval '10 minutes' + random() * interval '230 minutes' AS delayed_until, "
        "1::bigint AS schedule_token, NULL::timestamptz AS queued_at, "
        "NULL::int AS ttl_seconds, NULL::timestamptz AS ttl_expires_at "
        "FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) AS g"
    )
    with transaction() as session:
        session.execute(
            text(runs_insert_sql(rows)),
            {"project": project_id, "env": env_id, "lo": start_at, "hi": start_at + count - 1},
        )


def stream(project_id: str, env_id: str, size: int, spread: float) -> list[str]:
    """``size`` runs through the trigger path and as many countdown tasks, over ``spread``
    seconds, each due 2-12 s after it was sent."""
    from bench.timer_probe import PROBE
    from reprise_server.shared.broker import celery_app, queue_names
    from reprise_server.shared.db import transaction
    from reprise_server.shared.durations import iso
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import NewRun, create_run
    from reprise_server.shared.settings import get_settings

    app = celery_app()
    timers_queue = queue_names(get_settings())["timers"]
    run_ids = []
    began = time.monotonic()
    for i in range(size):
        wait = began + i * spread / size - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        offset = random.uniform(2.0, 12.0)
        due = datetime.now(UTC) + timedelta(seconds=offset)
        with transaction() as session:
            run = create_run(
                session, project_id, env_id,
                NewRun(task_identifier=TASK, payload={"i": i}, payload_type="application/json",
                       options=TriggerOptions(delay=iso(due))),
            )
            run_ids.append(run.id)
        app.send_task(PROBE, args=[time.time() + offset], countdown=offset, queue=timers_queue)
    return run_ids


def promotion_lateness(run_ids: list[str]) -> list[float]:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        rows = session.execute(
            text("SELECT extract(epoch FROM queued_at - delayed_until) FROM runs "
                 "WHERE id = ANY(:ids) AND queued_at IS NOT NULL"),
            {"ids": run_ids},
        ).scalars()
        return [float(v) for v in rows]


def countdown_lateness(client: object, expected: int) -> list[float]:
    from bench.timer_probe import LATENESS_KEY

    wait_until(lambda: client.llen(LATENESS_KEY) >= expected, 60, "the countdown tasks")  # type: ignore[attr-defined]
    values = [float(v) for v in client.lrange(LATENESS_KEY, 0, -1)]  # type: ignore[attr-defined]
    client.delete(LATENESS_KEY)  # type: ignore[attr-defined]
    return values


def armed_timers() -> int:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        return int(session.execute(text(
            "SELECT count(*) FROM runs WHERE status = 'DELAYED' "
            "AND timer_armed_token = schedule_token")).scalar_one())


def sweep_cost_ms(samples: int = 20) -> float:
    """The database side of one promote/arm sweep with nothing due (median)."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.timers.service import promote_due_runs

    times = []
    for _ in range(samples):
        began = time.perf_counter()
        with transaction() as session:
            promote_due_runs(session)
        times.append((time.perf_counter() - began) * 1000)
    return median(times)


def run_phase(project_id: str, env_id: str, pending: int, size: int, redis_client: object,
              worker_pid: int) -> Phase:
    run_ids = stream(project_id, env_id, size, spread=10.0)

    def all_promoted() -> bool:
        return len(promotion_lateness(run_ids)) == len(run_ids)

    wait_until(all_promoted, 60, "the stream's promotions")
    promoted = promotion_lateness(run_ids)
    countdown = countdown_lateness(redis_client, size)
    total, main = worker_rss(worker_pid)
    return Phase(
        pending=pending,
        armed=armed_timers(),
        promote_p50=quantile(promoted, 0.5), promote_p99=quantile(promoted, 0.99),
        promote_max=max(promoted),
        countdown_p50=quantile(countdown, 0.5), countdown_p99=quantile(countdown, 0.99),
        countdown_max=max(countdown),
        rss_total_mb=total, rss_main_mb=main,
        sweep_ms=sweep_cost_ms(),
    )


def naive_contrast(redis_client: object, worker_pid: int, count: int) -> tuple[float, float]:
    """RSS after the worker took ``count`` countdown tasks due in 2 h."""
    from bench.timer_probe import PROBE
    from reprise_server.shared.broker import celery_app, queue_names
    from reprise_server.shared.settings import get_settings

    app = celery_app()
    queue = queue_names(get_settings())["timers"]
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(PROBE, args=[time.time() + 7200], countdown=7200, queue=queue,
                          producer=producer)
    wait_until(lambda: redis_client.llen(queue) == 0, 120, "the worker to take them")  # type: ignore[attr-defined]
    time.sleep(2.0)
    return worker_rss(worker_pid)


def report(phases: list[Phase], naive: tuple[int, float, float] | None) -> str:
    lines = [
        "## Delayed promotion (`bench/delays.py`)",
        "",
        (f"Run {now_utc()} on {machine()}; embedded Postgres and Redis unless URLs were set; "
        "one prefork worker (`celery -A workers.app worker`, 4 processes) and one beat; default "
        "settings (horizon 300 s, sweep 2 s, visibility timeout 3600 s). Pending runs are "
        "due 10 min-4 h ahead; each stream is 200 runs through `create_run`, due 2-12 s "
        "after trigger, beside 200 plain Celery `countdown` tasks on the same queue and "
        "worker. Lateness in ms; ratio = promotion p99 / countdown p99."),
        "",
        ("| pending | promotion p50 / p99 / max | countdown p50 / p99 / max | ratio p99 "
        "| worker RSS total (main) | armed timers | sweep (DB) |"),
        "|---:|---|---|---:|---|---:|---:|",
    ]
    for p in phases:
        ratio = p.promote_p99 / p.countdown_p99 if p.countdown_p99 > 0 else float("nan")
        lines.append(
            f"| {p.pending:,} | {p.promote_p50 * 1000:.0f} / {p.promote_p99 * 1000:.0f} / "
            f"{p.promote_max * 1000:.0f} | {p.countdown_p50 * 1000:.0f} / "
            f"{p.countdown_p99 * 1000:.0f} / {p.countdown_max * 1000:.0f} | {ratio:.2f} | "
            f"{p.rss_total_mb:.0f} MiB ({p.rss_main_mb:.0f}) | {p.armed} | {p.sweep_ms:.1f} ms |"
        )
    if naive is not None:
        count, total, main = naive
        lines += [
            "",
            (f"Contrast: after the same worker took {count:,} countdown tasks due in 2 h (an "
            f"ETA per delayed run, no horizon) its RSS was {total:.0f} MiB ({main:.0f} main)."),
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pending", default="1000,10000,100000")
    parser.add_argument("--stream", type=int, default=200)
    parser.add_argument("--naive", type=int, default=10000)
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    targets = [int(n) for n in args.pending.split(",")]
    began = time.monotonic()

    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "reprise_server.examples.tasks")
        import redis

        from bench.timer_probe import LATENESS_KEY, PROBE
        from reprise.registry import REGISTRY
        from reprise_server.shared.settings import get_settings
        from reprise_server.workers.runtime import load_task_modules, register_version

        project_id, env_id = bench_project()
        load_task_modules("reprise_server.examples.tasks")
        register_version(REGISTRY, VERSION, ["dev"])
        settings = get_settings()
        tmp = Path(tempfile.mkdtemp(prefix="reprise-bench-delays-"))
        worker = start(
            ["celery", "-A", "reprise_server.workers.app", "worker", "-I", "bench.timer_probe", "--loglevel",
             "WARNING", "--concurrency", str(settings.worker_concurrency), "-n",
             "bench-delays@%h", "--without-gossip", "--without-mingle"],
            env, tmp / "worker.log",
        )
        beat = start(
            ["celery", "-A", "reprise_server.workers.app", "beat", "--loglevel", "WARNING", "--schedule",
             str(tmp / "beat-schedule")],
            env, tmp / "beat.log",
        )
        client = redis.Redis.from_url(redis_url)
        phases: list[Phase] = []
        naive = None
        try:
            from reprise_server.shared.broker import celery_app

            celery_app().send_task(PROBE, args=[time.time()], queue=f"{settings.queue_prefix}.timers")
            wait_until(lambda: client.llen(LATENESS_KEY) >= 1, 60, "the worker to start")
            client.delete(LATENESS_KEY)
            print("warming up the worker…", flush=True)
            run_phase(project_id, env_id, 0, 50, client, worker.pid)
            inserted = 0
            for target in targets:
                t = time.monotonic()
                insert_far_future(project_id, env_id, inserted + 1, target - inserted)
                maintenance("VACUUM ANALYZE runs", "CHECKPOINT")  # steady state, not a fresh load
                inserted = target
                print(f"{target:,} pending inserted in {time.monotonic() - t:.1f} s", flush=True)
                time.sleep(2 * settings.sweep_interval_seconds)
                phase = run_phase(project_id, env_id, target, args.stream, client, worker.pid)
                phases.append(phase)
                print(phase, flush=True)
            if args.naive:
                total, main_rss = naive_contrast(client, worker.pid, args.naive)
                naive = (args.naive, total, main_rss)
        finally:
            stop(beat)
            stop(worker)
            client.close()
    text = report(phases, naive)
    print()
    print(text)
    print(f"\n(total {time.monotonic() - began:.0f} s; logs in {tmp})")
    if args.record:
        append_results(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
