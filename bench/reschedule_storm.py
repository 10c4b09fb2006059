"""Benchmark of a control process's memory under a reschedule storm.

    .venv/bin/python bench/reschedule_storm.py             # ~2 min; embedded Postgres and Redis
    .venv/bin/python bench/reschedule_storm.py --record    # also append to RESULTS.md
    REPRISE_DATABASE_URL=… REPRISE_REDIS_URL=… .venv/bin/python bench/reschedule_storm.py

Two phases in one run, on the same Postgres and Redis, each with a fresh control process
(``reprise control``, its default threads pool and concurrency) and a fresh set of runs:

* **baseline**: the control process with Celery's own strategy for the promotion task
  (``bench/stock_timers_control.py``), which holds every ETA message until its ETA;
* **reprise**: ``reprise control`` as shipped (workers/held_timers.py lets go of a timer
  once a newer one for the same run arrives).

In each, ``--runs`` DELAYED runs are rescheduled ``--storm`` times in all, round robin from
``--threads`` threads, each by ``--delay`` (within the timer horizon, so every reschedule
arms a timer: the move and its timer are the request's, through
``shared.commands.reschedule.move_delayed_run``). Reported per phase: the control
process's RSS (psutil, sampled every 0.2 s) when idle, at its peak and once it has taken
every timer; the timer messages it holds unacknowledged in Redis; its CPU time while the
storm lasted; and its RSS growth as a ratio to the baseline phase's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing_stack import (
    append_results,
    bench_project,
    configure,
    machine,
    now_utc,
    servers,
    start,
    stop,
    wait_until,
)

VERSION = "bench.reschedule-storm"


@dataclass
class Phase:
    name: str
    idle_mb: float
    peak_mb: float
    settled_mb: float
    held: int
    storm_seconds: float
    cpu_seconds: float

    @property
    def growth_mb(self) -> float:
        return self.settled_mb - self.idle_mb


class RssSampler:
    """Samples a process's RSS (with its children) every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def now(self) -> float:
        rss = self._process.memory_info().rss + sum(
            child.memory_info().rss for child in self._process.children(recursive=True)
        )
        return rss / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> Self:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def create_delayed_runs(project_id: str, env_id: str, count: int) -> list[str]:
    """``count`` DELAYED runs due in 1 h (beyond the horizon: no timer of their own)."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.options import RunOptions
    from reprise_server.shared.runs.service import NewRun, create_run

    ids = []
    with transaction() as session:
        for i in range(count):
            run = create_run(
                session, project_id, env_id,
                NewRun(task_identifier="hello-world", payload={"i": i},
                       payload_type="application/json", options=RunOptions(), delay="1h"),
            )
            ids.append(run.id)
    return ids


def storm(run_ids: list[str], total: int, threads: int, delay: timedelta) -> float:
    """``total`` reschedules, round robin over the runs; returns the seconds it took."""
    from reprise_server.shared.commands.reschedule import move_delayed_run
    from reprise_server.shared.db import db_now, transaction

    def reschedule_share(offset: int) -> None:
        for i in range(offset, total, threads):
            run_id = run_ids[i % len(run_ids)]
            with transaction() as session:
                move_delayed_run(session, run_id, delay, db_now(session))

    began = time.monotonic()
    workers = [threading.Thread(target=reschedule_share, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.monotonic() - began


def held_timers(client: object, timers_queue: str) -> int:
    """Promotion timers delivered to a consumer and not acknowledged."""
    from reprise_server.shared.broker import UNACKED_KEY

    return sum(
        1 for raw in client.hvals(UNACKED_KEY)  # type: ignore[attr-defined]
        if json.loads(raw)[2] == timers_queue
    )


def run_phase(name: str, module: str, env: dict[str, str], log: Path, project_id: str,
              env_id: str, args: argparse.Namespace, client: object) -> Phase:
    from reprise_server.shared.broker import queue_lengths, queue_names
    from reprise_server.shared.settings import get_settings

    timers_queue = queue_names(get_settings())["timers"]
    run_ids = create_delayed_runs(project_id, env_id, args.runs)
    control = start([module, "control", "--loglevel", "WARNING"] if module == "reprise.cli"
                    else [module, "--loglevel", "WARNING"], env, log)
    try:
        # Ready once it has taken (and, at its ETA, run) a first timer of its own.
        from reprise_server.shared.broker import arm_timer_in

        arm_timer_in(run_ids[0], 0, 0.0)
        wait_until(lambda: queue_lengths(client, [timers_queue])[timers_queue] == 0  # type: ignore[arg-type]
                   and held_timers(client, timers_queue) == 0, 60, "the control process")
        time.sleep(3.0)  # let its start-up allocations settle before the idle figure
        with RssSampler(control.pid) as rss:
            idle, cpu_before = rss.now(), rss.cpu_seconds()
            seconds = storm(run_ids, args.storm, args.threads, timedelta(seconds=args.delay))
            wait_until(lambda: queue_lengths(client, [timers_queue])[timers_queue] == 0,  # type: ignore[arg-type]
                       120, "the control process to take every timer")
            time.sleep(3.0)  # let it finish handling the last ones
            held = held_timers(client, timers_queue)
            settled, cpu = rss.now(), rss.cpu_seconds() - cpu_before
        return Phase(name, idle, max(rss.peak, settled), settled, held, seconds, cpu)
    finally:
        stop(control)
        client.delete(timers_queue)  # type: ignore[attr-defined]


def report(phases: list[Phase], args: argparse.Namespace) -> str:
    base = phases[0]
    lines = [
        "## Control process memory under a reschedule storm (`bench/reschedule_storm.py`)",
        "",
        (f"Run {now_utc()} on {machine()}; embedded Postgres and Redis unless URLs were set. "
         f"{args.storm:,} reschedules by {args.delay} s (within the horizon: each arms a "
         f"timer) over {args.runs} DELAYED runs, from {args.threads} threads, against one "
         "`reprise control` (threads pool, default concurrency) per phase. Baseline: the "
         "same process with Celery's own strategy for the promotion task "
         "(`bench/stock_timers_control.py`). RSS by psutil every 0.2 s; held = timer "
         "messages delivered to it and not acknowledged (Redis `unacked`)."),
        "",
        ("| control process | RSS idle | peak | after the storm | growth | ratio to baseline "
         "| timers held | its CPU in the storm | storm |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in phases:
        ratio = p.growth_mb / base.growth_mb if base.growth_mb > 0 else float("nan")
        lines.append(
            f"| {p.name} | {p.idle_mb:.0f} MiB | {p.peak_mb:.0f} MiB | {p.settled_mb:.0f} MiB "
            f"| {p.growth_mb:+.0f} MiB | {ratio:.2f} | {p.held:,} | {p.cpu_seconds:.1f} s "
            f"| {p.storm_seconds:.1f} s |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storm", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--delay", type=int, default=240, help="seconds (under the horizon)")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    began = time.monotonic()
    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "reprise_server.examples.tasks")
        import redis

        from reprise.registry import REGISTRY
        from reprise_server.workers.runtime import load_task_modules, register_version

        project_id, env_id = bench_project()
        load_task_modules("reprise_server.examples.tasks")
        register_version(REGISTRY, VERSION, ["dev"])
        tmp = Path(tempfile.mkdtemp(prefix="reprise-bench-storm-"))
        client = redis.Redis.from_url(redis_url)
        phases = []
        try:
            for name, module in (("baseline (Celery's strategy)", "bench.stock_timers_control"),
                                 ("reprise control", "reprise.cli")):
                print(f"{name}…", flush=True)
                phase = run_phase(name, module, env, tmp / f"{module}.log", project_id, env_id,
                                  args, client)
                print(phase, flush=True)
                phases.append(phase)
        finally:
            client.close()
    text = report(phases, args)
    print()
    print(text)
    print(f"\n(total {time.monotonic() - began:.0f} s; logs in {tmp})")
    if args.record:
        append_results(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
