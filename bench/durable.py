"""Durable steps and waits: what a step costs, how fast a record replays, how late waits end.

    .venv/bin/python bench/durable.py               # every row (a few minutes)
    .venv/bin/python bench/durable.py --runs 2000   # fewer waiting runs
    .venv/bin/python bench/durable.py --record      # also append to bench/RESULTS.md

Postgres and Redis are embedded unless ``REPRISE_DATABASE_URL``/``REPRISE_REDIS_URL`` are
set (a scratch database is made there).

* **a no-op step** (in this process, through the worker's own path
  ``workers.execution.execute_run``): a run of 200 no-op ``ctx.step`` calls against the
  same task with none (the baseline, same run); the difference per step, this process's
  CPU and Postgres's (embedded only). Target: ≤ 1 ms of CPU per step.
* **a record replayed on resume**: a run of 100 steps then a wait, executed; its wait
  completed; executed again: the time the resumed execution took to answer its 100 steps
  from the record (measured inside the task), against the time the first execution took
  to run and record them. Target ≤ 50 ms.
* **waiting runs** (real processes: one ``reprise worker`` of 4 prefork slots, ``reprise
  control``, ``reprise beat``): ``--runs`` runs (10,000) each waiting 5 s after it starts.
  Lateness of each wait's end (the waitpoint completed and the run queued again, minus its
  due time) and of its resumed execution's start, p50/p99, beside the baseline of the same
  number of runs delayed 5 s (the delayed-run timers: promoted minus due) in the same run;
  and, at the moment the most runs waited at once, how many executed (a waiting run holds
  no slot: at most the worker's 4 slots are busy, with the runs that have not waited yet).
  The waits start once the timers queue is empty (the delayed runs' timers that the sweep
  made moot can be left in it, and the waits' timers would queue behind them); how long
  that took is printed.
* **a parent of 100 children**: ``batch_trigger_and_wait`` of 100 no-op children; from
  the last child's end to the parent queued again, and to its resumed execution starting.
  Target ≤ 1 s.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.in_process import InProcess
from bench.timing_stack import (
    append_results,
    configure,
    machine,
    now_utc,
    quantile,
    servers,
    start,
    stop,
    wait_until,
)

VERSION = "20261206.durable-bench"


def step_cost(bench: InProcess, rounds: int, steps: int = 200) -> dict[str, float]:
    per_step, per_step_pg, base = [], [], []
    for _ in range(rounds):
        none = bench.trigger("bench-steps", 5, {"steps": 0})
        some = bench.trigger("bench-steps", 5, {"steps": steps})
        cpu_none, pg_none = bench.execute(none)
        cpu_some, pg_some = bench.execute(some)
        base.append(cpu_none / 5)
        per_step.append((cpu_some - cpu_none) / 5 / steps)
        per_step_pg.append((pg_some - pg_none) / 5 / steps)
    return {"step": quantile(per_step, 0.5), "step_pg": quantile(per_step_pg, 0.5),
            "run": quantile(base, 0.5)}


def record_replay(bench: InProcess, rounds: int) -> dict[str, float]:
    from reprise_server.shared.db import discard_after_commit, transaction
    from reprise_server.shared.durable import service as durable
    from reprise_server.shared.durable.models import RunStep
    from reprise_server.shared.runs.models import Run

    first, replay = [], []
    for _ in range(rounds):
        [run_id] = bench.trigger("bench-steps", 1, {"steps": 100, "wait": 3600})
        bench.execute([run_id], expect="WAITING")
        with transaction() as session:
            step = session.get(RunStep, (run_id, 100))
            assert step is not None
            assert step.detail is not None
            for waitpoint_id in step.detail["waitpoints"]:
                durable.complete_waitpoint(session, waitpoint_id)
            discard_after_commit(session)
        bench.execute([run_id])
        with transaction() as session:
            run = session.get(Run, run_id)
            assert run is not None
            replay.append(float(run.output["steps_ms"]))
        # The first execution's figure: a run of the same steps that does not wait.
        [plain] = bench.trigger("bench-steps", 1, {"steps": 100})
        bench.execute([plain])
        with transaction() as session:
            run = session.get(Run, plain)
            assert run is not None
            first.append(float(run.output["steps_ms"]))
    return {"replay": quantile(replay, 0.5), "first": quantile(first, 0.5)}


def waiting_runs(env: dict[str, str], count: int, logs: Path) -> dict[str, float]:
    """Real processes: ``count`` runs each waiting 5 s, and ``count`` runs delayed 5 s."""
    from sqlalchemy import text

    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects import repository as projects_repo
    from reprise_server.shared.projects.service import AuthContext, ensure_project
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run

    procs = [
        start(["reprise.cli", "worker", "--pool", "prefork", "--concurrency", "4"], env,
              logs / "worker.log"),
        start(["reprise.cli", "control"], env, logs / "control.log"),
        start(["reprise.cli", "beat", "--schedule", str(logs / "beat-schedule")], env,
              logs / "beat.log"),
    ]
    try:
        with transaction() as session:
            project = ensure_project(session, f"bench-waits-{secrets.token_hex(3)}")
            dev = projects_repo.get_environment(session, project.id, "dev")
            assert dev is not None
        auth = AuthContext(project.id, dev.id, "dev")

        def registered() -> bool:
            with transaction() as session:
                return bool(session.execute(text(
                    "SELECT 1 FROM version_tasks WHERE environment_id = :e "
                    "AND task_identifier = 'bench-wait'"), {"e": dev.id}).first())

        wait_until(registered, 120, "the worker to register")

        def trigger(task: str, payload: Any, total: int, **options: Any) -> list[str]:
            ids: list[str] = []
            while len(ids) < total:
                with transaction() as session:
                    for _ in range(min(500, total - len(ids))):
                        ids.append(trigger_run(session, auth, task, payload,
                                               TriggerOptions.model_validate(options)).run.id)
            return ids

        def statuses(ids: list[str]) -> dict[str, int]:
            with transaction() as session:
                return dict(session.execute(text(
                    "SELECT status, count(*) FROM runs WHERE id = ANY(:ids) GROUP BY status"),
                    {"ids": ids}).all())

        # Baseline: delayed 5 s, promoted by the delayed-run timers.
        delayed = trigger("bench-noop", {}, count, delay="5s")
        wait_until(lambda: statuses(delayed).get("COMPLETED") == count, 600, "delayed runs")
        with transaction() as session:
            promoted = [r[0] for r in session.execute(text(
                "SELECT extract(epoch FROM dispatched_at - delayed_until) FROM runs "
                "WHERE id = ANY(:ids)"), {"ids": delayed})]
        # The baseline's timers the sweep made moot may still wait in the timers queue (the
        # control takes them one message at a time): the waits' timers would queue behind
        # them. Each row measures its own burst.
        from reprise_server.shared import broker
        from reprise_server.shared.settings import get_settings

        timers_queue = broker.queue_names(get_settings())["timers"]
        redis_client = broker.broker_client(get_settings().redis_url)
        drained_from = time.monotonic()
        wait_until(lambda: redis_client.llen(timers_queue) == 0, 600, "the timers queue")
        timers_drain = time.monotonic() - drained_from
        # Durable waits: each run starts, waits 5 s (no slot held), resumes.
        ids = trigger("bench-wait", {"wait": 5}, count)
        most_waiting, executing_then = 0, 0

        def done() -> bool:
            nonlocal most_waiting, executing_then
            seen = statuses(ids)
            if seen.get("WAITING", 0) > most_waiting:
                most_waiting = seen.get("WAITING", 0)
                executing_then = sum(seen.get(s, 0) for s in ("EXECUTING", "DEQUEUED"))
            return seen.get("COMPLETED") == count

        wait_until(done, 900, "every waiting run completed")
        with transaction() as session:
            rows = session.execute(text(
                "SELECT extract(epoch FROM w.completed_at - w.complete_after), "
                "extract(epoch FROM a.started_at - w.complete_after) "
                "FROM run_steps s JOIN waitpoints w ON w.id = s.detail->'waitpoints'->>0 "
                "JOIN attempts a ON a.run_id = s.run_id AND a.number = 2 "
                "WHERE s.run_id = ANY(:ids)"), {"ids": ids}).all()
        requeued = [float(r[0]) for r in rows]
        started = [float(r[1]) for r in rows]
        # A parent of 100 children.
        [parent] = trigger("bench-fanout", {"children": 100}, 1)
        wait_until(lambda: statuses([parent]).get("COMPLETED") == 1, 300, "the fan-out parent")
        with transaction() as session:
            last_child, queued_again, resumed = session.execute(text(
                "SELECT (SELECT max(finished_at) FROM runs WHERE parent_run_id = :p), "
                "(SELECT max(w.completed_at) FROM waitpoints w JOIN runs c "
                " ON c.waitpoint_id = w.id WHERE c.parent_run_id = :p), "
                "(SELECT started_at FROM attempts WHERE run_id = :p AND number = 2)"),
                {"p": parent}).one()
        return {
            "delayed_p50": quantile(promoted, 0.5), "delayed_p99": quantile(promoted, 0.99),
            "requeue_p50": quantile(requeued, 0.5), "requeue_p99": quantile(requeued, 0.99),
            "start_p50": quantile(started, 0.5), "start_p99": quantile(started, 0.99),
            "most_waiting": float(most_waiting),
            "executing": float(executing_then),
            "fanout_requeue": (queued_again - last_child).total_seconds(),
            "fanout_start": (resumed - last_child).total_seconds(),
            "timers_drain": timers_drain,
        }
    finally:
        for proc in procs:
            stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    logs = Path(__import__("tempfile").mkdtemp(prefix="reprise-bench-durable-"))
    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "bench.durable_tasks")
        bench = InProcess("bench.durable_tasks", VERSION, "bench-durable")
        bench.execute(bench.trigger("bench-steps", 3, {"steps": 10}))  # warm up
        steps = step_cost(bench, args.rounds)
        replay = record_replay(bench, args.rounds)
        waits = waiting_runs(env, args.runs, logs)
    n = f"{args.runs:,}"
    table = [
        "| figure | measured | baseline (same run) | target |",
        "|---|---:|---:|---:|",
        (f"| CPU of a no-op step, this process | {steps['step']:.3f} ms | a run with no step: "
        f"{steps['run']:.2f} ms | ≤ 1 ms |"),
        f"| Postgres CPU of a no-op step | {steps['step_pg']:.3f} ms | | |",
        (f"| 100 recorded steps answered on resume | {replay['replay']:.1f} ms | run and recorded "
        f"the first time: {replay['first']:.1f} ms | ≤ 50 ms |"),
        (f"| {n} runs waiting 5 s: queued again after due, p50 / p99 | {waits['requeue_p50']:.3f}"
        f" / {waits['requeue_p99']:.3f} s | {n} runs delayed 5 s, promoted after due: "
        f"{waits['delayed_p50']:.3f} / {waits['delayed_p99']:.3f} s | p99 ≤ 1 s |"),
        (f"| the same: resumed execution started after due, p50 / p99 | {waits['start_p50']:.3f}"
        f" / {waits['start_p99']:.3f} s | | |"),
        (f"| most runs waiting at once; runs executing then (4 slots) | "
         f"{waits['most_waiting']:.0f}; {waits['executing']:.0f} | | ≤ 4 executing |"),
        (f"| parent of 100 children: queued again after the last child ended | "
        f"{waits['fanout_requeue']:.3f} s | | ≤ 1 s |"),
        f"| the same: its resumed execution started | {waits['fanout_start']:.3f} s | | |",
    ]
    table.append("")
    table.append(f"Between the delayed runs and the waits, the timers queue took "
                 f"{waits['timers_drain']:.1f} s to empty (the delayed runs' timers left in it).")
    print("\n".join(table))
    if args.record:
        append_results(
            "## Durable steps and waits (`bench/durable.py`)\n\n"
            f"Run {now_utc()} on {machine()}; `.venv/bin/python bench/durable.py --runs "
            f"{args.runs}`; embedded Postgres and Redis unless URLs were set; steps and the "
            f"record replay in this process (median of {args.rounds} rounds), waits on one "
            "`reprise worker --pool prefork --concurrency 4`, `reprise control` and `reprise "
            "beat` with the shipped settings.\n\n" + "\n".join(table) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
