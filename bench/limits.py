"""Flow control: what concurrency limits cost, beside baselines measured in the same run on
the same Redis, Postgres and worker shape (docs/concurrency.md).

    .venv/bin/python bench/limits.py                 # a few minutes on 2 cores
    .venv/bin/python bench/limits.py --full          # admission at 10,000 keys x 10 runs
    .venv/bin/python bench/limits.py --quick         # small sizes, a smoke test
    .venv/bin/python bench/limits.py --record        # also append to bench/RESULTS.md

Figures:

* **drain at the limit**: runs queued with no worker, then drained by one
  ``celery -A workers.app worker --pool prefork --concurrency N``: the no-op
  ``bench-limited`` (its own limit ``total = N``: the worker's slots) against the unlimited
  no-op ``bench-noop`` (the fast path: published at trigger), alternating, ``--rounds``
  times. Runs per second from the first started to the last finished; the ratio is
  limited / unlimited (target >= 0.8).
* **slot freed -> next run started**: from the limited drains, per admitted run: its
  ``started_at`` (and ``dequeued_at``) minus the ``finished_at`` of the run whose end
  admitted it (the admission is written by that run's finishing transaction, so the
  admitted run's ``dispatched_at`` is that transaction's ``now()``, equal to the finishing
  run's ``finished_at``). Target p99 <= 50 ms.
* **CPU per run**: the unlimited drain's CPU by process (worker main and pool, Postgres,
  Redis) per run, beside raw Celery no-ops on the same worker shape (kombu's stock Redis
  transport and Reprise's). ``--only unlimited`` runs this figure alone, so that it can be
  run from a checkout of an earlier commit (with this file copied in) for a before/after.
* **admission cost vs keys**: in this process, no worker and no publishing (the admitted
  runs' messages are not sent: admission is what is timed). A ``per_key = 1`` limit with
  few keys and one with many (100 and 10,000 keys; ``--full``: 10 runs each), every key's
  head admitted; then ``--samples`` runs, chosen at random, are claimed and finished the
  way a worker does (``claim_and_begin``, ``finish_attempt``), one transaction each: the
  settlement (``shared.flow.admission._settle``: the slot given back, the next run of the
  key admitted) is timed per admitted run, and the whole finishing transaction beside an
  unlimited run's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.throughput import (
    Cpu,
    _meter,
    _per_run,
    closed_loop,
    raw_celery,
    sql,
    start_worker,
    store_pids,
)
from bench.timing_stack import (
    append_results,
    configure,
    machine,
    now_utc,
    quantile,
    servers,
    start_bench_api,
    stop,
    wait_until,
)

VERSION = "limits.1"
UNLIMITED = "bench-noop"
LIMITED = "bench-limited"
KEYS_FEW, KEYS_MANY = "bench-keys-few", "bench-keys-many"
WORKER = "bench-inprocess@limits"
TRIGGER_BATCH = 500  # runs triggered per transaction when filling the admission lines


@dataclass
class Sizes:
    runs: int  # per drain
    few_keys: int
    many_keys: int
    runs_per_key: int
    samples: int


DEFAULT = Sizes(runs=1000, few_keys=100, many_keys=10_000, runs_per_key=3, samples=300)
QUICK = Sizes(runs=200, few_keys=20, many_keys=500, runs_per_key=2, samples=50)
FULL = Sizes(runs=2000, few_keys=100, many_keys=10_000, runs_per_key=10, samples=1000)


def modules() -> str:
    return "bench.throughput_tasks,bench.limits_tasks"


def prepare(only_unlimited: bool) -> str:
    """A dev key and the catalogue of the bench tasks."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.service import create_key
    from reprise_server.workers.runtime import load_task_modules, register_version

    with transaction() as session:
        key = create_key(session, "dev")
    tasks = "bench.throughput_tasks" if only_unlimited else modules()
    register_version(load_task_modules(tasks), VERSION, ["dev"])
    return key


# --- drains with workers ------------------------------------------------------------------


@dataclass
class Drain:
    rate: float
    cpu: Cpu
    started_ms: list[float] = field(default_factory=list)  # slot freed -> next started
    dequeued_ms: list[float] = field(default_factory=list)  # slot freed -> next claimed


def drain(env: dict[str, str], logs: Path, key: str, task_id: str, runs: int, processes: int,
          api_port: int, stores: dict[str, int]) -> Drain:
    """``runs`` of ``task_id`` triggered over HTTP with no worker running, then drained by
    one worker of ``processes`` slots: runs per second from the first started to the last
    finished, and the CPU they cost by process (from the first run started on)."""
    from reprise_server.shared.broker import queue_names
    from reprise_server.shared.settings import get_settings

    sql("DELETE FROM attempts; DELETE FROM runs")
    body = b'{"payload": null}'
    closed_loop(api_port, key, [(f"/api/v1/tasks/{task_id}/trigger", body)] * runs)

    def completed() -> int:
        return int(sql("SELECT count(*) FROM runs WHERE status = 'COMPLETED'")[0][0])

    worker = start_worker(env, queue_names(get_settings())["runs"], processes,
                          logs / f"{task_id}.log")
    try:
        wait_until(lambda: sql("SELECT 1 FROM runs WHERE started_at IS NOT NULL LIMIT 1"),
                   120, "the worker to start a run")
        meter = _meter(stores, worker)
        meter.start()
        done_before = completed()
        wait_until(lambda: completed() >= runs, 600, f"the queued {task_id} runs to drain")
        spent = meter.stop()
    finally:
        stop(worker)
    [(seconds,)] = sql("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM runs")
    result = Drain(runs / float(seconds), _per_run(spent, runs - done_before))
    if task_id == LIMITED:
        # The run each finishing transaction admitted: its dispatched_at is that
        # transaction's now(), which is also the finishing run's finished_at.
        for started, dequeued in sql(
            "SELECT extract(epoch FROM b.started_at - a.finished_at) * 1000, "
            "       extract(epoch FROM b.dequeued_at - a.finished_at) * 1000 "
            "FROM runs a JOIN runs b ON b.dispatched_at = a.finished_at AND b.id <> a.id "
            "WHERE b.started_at IS NOT NULL"
        ):
            result.started_ms.append(float(started))
            result.dequeued_ms.append(float(dequeued))
        paired = len(result.started_ms)
        if paired < runs - processes:
            print(f"  only {paired} of {runs - processes} admitted runs paired with the run "
                  "that freed their slot", flush=True)
    return result


# --- admission cost in this process -------------------------------------------------------


@dataclass
class Cost:
    keys: int
    runs: int
    fill_s: float  # triggering every run (the line entered), per run below
    settle_ms: list[float] = field(default_factory=list)  # per admitted run
    finish_ms: list[float] = field(default_factory=list)  # whole finishing transaction
    admitted: int = 0
    explain: str = ""


@contextmanager
def no_publishing() -> Iterator[list[int]]:
    """Admitted runs are counted, not published (nobody consumes them here)."""
    from reprise_server.shared import broker

    counted: list[int] = []
    saved = broker.dispatch_runs, broker.dispatch_run
    broker.dispatch_runs = lambda runs, *a, **k: counted.append(len(list(runs)))  # type: ignore[assignment]
    broker.dispatch_run = lambda *a, **k: counted.append(1)  # type: ignore[assignment]
    try:
        yield counted
    finally:
        broker.dispatch_runs, broker.dispatch_run = saved


@contextmanager
def timed_settlements() -> Iterator[list[float]]:
    """Every admission settlement's duration (ms), in the order they ran."""
    from reprise_server.shared.flow import admission

    durations: list[float] = []
    original = admission._settle

    def settle(session: Any, pending: Any) -> None:
        began = time.perf_counter()
        original(session, pending)
        durations.append((time.perf_counter() - began) * 1000)

    admission._settle = settle  # type: ignore[assignment]
    try:
        yield durations
    finally:
        admission._settle = original  # type: ignore[assignment]


def _auth() -> Any:
    from reprise_server.shared.projects.service import AuthContext

    [(project_id, env_id)] = sql(
        "SELECT e.project_id, e.id FROM environments e JOIN api_keys k "
        "ON k.environment_id = e.id LIMIT 1"
    )
    return AuthContext(project_id, env_id, "dev")


def _trigger(auth: Any, task_id: str, keys: list[str]) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run

    for start in range(0, len(keys), TRIGGER_BATCH):
        with transaction() as session:
            for k in keys[start:start + TRIGGER_BATCH]:
                trigger_run(session, auth, task_id, None,
                            TriggerOptions.model_validate({"concurrencyKey": k}))


def _sweep_until_full() -> int:
    """Every key's head admitted (a settlement admits at most 200 runs per limit; the
    sweep, the control beat, the rest)."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.flow import admission

    total = 0
    while True:
        with transaction() as session:
            admitted = admission.sweep(session)
        total += admitted
        if not admitted:
            return total


def _claim_and_finish(run_id: str, tasks: list[str]) -> float | None:
    """Claim and start ``run_id``, then end its attempt (succeeded) in a transaction of its
    own, as a worker does; returns that finishing transaction's duration (ms)."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs import attempts

    with transaction() as session:
        begun = attempts.claim_and_begin(session, run_id, WORKER, VERSION, tasks)
    if begun is None:
        return None
    run, attempt = begun
    began = time.perf_counter()
    with transaction() as session:
        attempts.finish_attempt(session, run, WORKER, attempt.number, 1,
                                attempts.Succeeded(None))
    return (time.perf_counter() - began) * 1000


def admission_cost(auth: Any, task_id: str, keys: int, runs_per_key: int,
                   samples: int) -> Cost:
    order = [f"k{k:05d}" for _ in range(runs_per_key) for k in range(keys)]
    began = time.perf_counter()
    with no_publishing():
        _trigger(auth, task_id, order)
        _sweep_until_full()
        fill_s = time.perf_counter() - began
        cost = Cost(keys, len(order), fill_s)
        [(running, waiting)] = sql(
            "SELECT count(*) FILTER (WHERE admission IS NULL), "
            "count(*) FILTER (WHERE admission = 'waiting') FROM runs "
            "WHERE task_identifier = :t AND status = 'QUEUED'", t=task_id)
        assert running == keys, (running, waiting)
        assert waiting == len(order) - keys, (running, waiting)
        chosen = [r for (r,) in sql(
            "SELECT id FROM runs WHERE task_identifier = :t AND status = 'QUEUED' "
            "AND admission IS NULL ORDER BY random() LIMIT :n", t=task_id, n=samples)]
        sql("ANALYZE concurrency_keys; ANALYZE admission_line; ANALYZE concurrency_slots")
        cost.explain = _explain_next_key(task_id)
        with no_publishing() as counted, timed_settlements() as settled:
            for run_id in chosen:
                before_counted, before_settled = sum(counted), len(settled)
                finish = _claim_and_finish(run_id, [task_id])
                if finish is None:
                    continue
                cost.finish_ms.append(finish)
                admitted = sum(counted) - before_counted
                # The claim settles nothing; the finish settles once.
                spent = sum(settled[before_settled:])
                if admitted:
                    cost.settle_ms.append(spent / admitted)
                    cost.admitted += admitted
    return cost


def unlimited_finish_ms(auth: Any, samples: int) -> list[float]:
    """The same claim-and-finish of unlimited no-op runs (the fast path): the reference for
    the finishing transaction's duration."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run

    with no_publishing():
        with transaction() as session:
            ids = [trigger_run(session, auth, UNLIMITED, None, TriggerOptions()).run.id
                   for _ in range(samples)]
        spent = [_claim_and_finish(run_id, [UNLIMITED]) for run_id in ids]
    return [ms for ms in spent if ms is not None]


def _explain_next_key(task_id: str) -> str:
    """The plan of one step of a fill (``_ADMIT_NEXT``: the next key's head found and
    admitted), in a transaction rolled back: every key is at its bound here, so it admits
    nothing, and the probe of the keys with room is what it reads."""
    from sqlalchemy import text

    from reprise_server.shared.db import session_factory
    from reprise_server.shared.flow.admission import _ADMIT_NEXT, limit_id

    [(env_id,)] = sql("SELECT environment_id FROM runs WHERE task_identifier = :t LIMIT 1",
                      t=task_id)
    with session_factory()() as session:
        plan = session.execute(
            text("EXPLAIN (ANALYZE, COSTS OFF, TIMING ON, BUFFERS) " + str(_ADMIT_NEXT)),
            {"limit_id": limit_id(env_id, f"task/{task_id}"), "skipped": []},
        ).all()
        session.rollback()
    return "\n".join(line for (line,) in plan)


# --- the report ---------------------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    return f"{quantile(values, q):.2f}" if values else "-"


ROLES = ["worker main", "worker pool", "postgres", "redis", "bench"]


def cpu_row(name: str, spent: Cpu) -> str:
    total = sum(spent.get(r, 0.0) for r in ROLES)
    return (f"| {name} | " + " | ".join(f"{spent.get(r, 0.0):.2f}" for r in ROLES)
            + f" | {total:.2f} | {total - spent.get('bench', 0.0):.2f} |")


def cpu_table(rows: dict[str, Cpu]) -> list[str]:
    return [
        ("| CPU ms per run | worker main | worker pool | postgres | redis | bench process "
        "| total | total without the bench process |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(cpu_row(name, spent) for name, spent in rows.items()),
    ]


def mean_cpu(drains: list[Drain]) -> Cpu:
    roles = {r for d in drains for r in d.cpu}
    return {r: statistics.mean(d.cpu.get(r, 0.0) for d in drains) for r in roles}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="admission cost at 10,000 keys x 10 runs (and 2,000-run drains)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--processes", type=int, default=4,
                        help="the worker's prefork slots, and the limited task's total (4)")
    parser.add_argument("--rounds", type=int, default=3, help="drains of each task (3)")
    parser.add_argument("--only", choices=["unlimited", "keys"],
                        help="only the unlimited drain's CPU (for a before/after on a "
                             "checkout), or only the admission cost at few and many keys")
    args = parser.parse_args()
    sizes = FULL if args.full else QUICK if args.quick else DEFAULT
    n = args.processes
    os.environ["REPRISE_BENCH_SLOTS"] = str(n)
    logs = Path(tempfile.mkdtemp(prefix="reprise-limits-"))
    from reprise_server.workers.devstack import free_port

    only_unlimited, only_keys = args.only == "unlimited", args.only == "keys"
    started = time.monotonic()
    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION,
                        "bench.throughput_tasks" if only_unlimited else modules())
        env["REPRISE_BENCH_SLOTS"] = str(n)
        # A PYTHONPATH given to this process reaches the workers too (a checkout of an
        # earlier commit, run with PYTHONPATH=<checkout>/server, for a before/after).
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ["PYTHONPATH"]])
        key = prepare(only_unlimited)
        stores = store_pids(env)
        unlimited: list[Drain] = []
        limited: list[Drain] = []
        raw: dict[str, tuple[float, Cpu]] = {}
        if not only_keys:
            api_port = free_port()
            api = start_bench_api(env, api_port, 2, logs / "api.log")
            try:
                for _ in range(args.rounds):
                    unlimited.append(drain(env, logs, key, UNLIMITED, sizes.runs, n,
                                           api_port, stores))
                    if not only_unlimited:
                        limited.append(drain(env, logs, key, LIMITED, sizes.runs, n,
                                             api_port, stores))
            finally:
                stop(api)
            raw = {
                "raw Celery no-op (kombu's stock Redis transport)":
                    raw_celery(env, logs, sizes.runs, n, stores),
                "raw Celery no-op (Reprise's Redis transport)":
                    raw_celery(env, logs, sizes.runs, n, stores, stock=False),
            }
        costs: list[Cost] = []
        reference: list[float] = []
        if not only_unlimited:
            sql("DELETE FROM attempts; DELETE FROM runs")
            auth = _auth()
            reference = unlimited_finish_ms(auth, sizes.samples)
            costs = [
                admission_cost(auth, KEYS_FEW, sizes.few_keys, sizes.runs_per_key,
                               sizes.samples),
                admission_cost(auth, KEYS_MANY, sizes.many_keys, sizes.runs_per_key,
                               sizes.samples),
            ]
    elapsed = time.monotonic() - started

    lines = report(sizes, n, unlimited, limited, raw, costs, reference)
    print("\n".join(lines))
    print(f"\n({elapsed:.0f} s)")
    if costs:
        print("\n_ADMIT_NEXT at", costs[-1].keys, "keys:\n" + costs[-1].explain)
    if args.record:
        flags = " ".join(a for a in sys.argv[1:] if a != "--record")
        append_results(
            "## Concurrency limits (bench/limits.py)\n\n"
            f"Run {now_utc()} on {machine()}; one `celery -A workers.app worker --pool "
            f"prefork --concurrency {n}` per drain, 2 api processes. Reproduce with "
            f"`.venv/bin/python bench/limits.py{' ' + flags if flags else ''}`.\n\n"
            + "\n".join(lines) + "\n"
        )


def report(sizes: Sizes, n: int, unlimited: list[Drain], limited: list[Drain],
           raw: dict[str, tuple[float, Cpu]], costs: list[Cost],
           reference: list[float]) -> list[str]:
    lines: list[str] = []
    if limited:
        lines += [
            (f"| drain of {sizes.runs} queued no-op runs, prefork {n} | round | runs/s | "
            "x unlimited |"),
            "|---|---:|---:|---:|",
        ]
        for i, (u, lim) in enumerate(zip(unlimited, limited, strict=True), 1):
            lines.append(f"| unlimited (`{UNLIMITED}`) | {i} | {u.rate:.0f} | 1.00 |")
            lines.append(f"| own limit total={n} (`{LIMITED}`) | {i} | {lim.rate:.0f} | "
                         f"{lim.rate / u.rate:.2f} |")
        u_rate = statistics.median(d.rate for d in unlimited)
        l_rate = statistics.median(d.rate for d in limited)
        lines += [(f"| median of the rounds: limited / unlimited | | {l_rate:.0f} / {u_rate:.0f} "
                  f"| **{l_rate / u_rate:.2f}** |"), ""]
        started = [v for d in limited for v in d.started_ms]
        dequeued = [v for d in limited for v in d.dequeued_ms]
        lines += [
            ("| slot freed -> next run (ms, from the finishing run's `finished_at`) | runs | "
            "p50 | p90 | p99 | max |"),
            "|---|---:|---:|---:|---:|---:|",
            (f"| -> `dequeued_at` (claimed) | {len(dequeued)} | {ms(dequeued, 0.5)} | "
            f"{ms(dequeued, 0.9)} | {ms(dequeued, 0.99)} | {ms(dequeued, 1.0)} |"),
            (f"| -> `started_at` | {len(started)} | {ms(started, 0.5)} | {ms(started, 0.9)} | "
            f"**{ms(started, 0.99)}** | {ms(started, 1.0)} |"),
            "",
        ]
    if unlimited:
        lines += cpu_rows(unlimited, limited, raw)
    if costs:
        lines += cost_rows(sizes, costs, reference)
    return lines


def cpu_rows(unlimited: list[Drain], limited: list[Drain],
             raw: dict[str, tuple[float, Cpu]]) -> list[str]:
    rows = {f"unlimited `{UNLIMITED}` drain (mean of {len(unlimited)})": mean_cpu(unlimited)}
    if limited:
        rows[f"limited `{LIMITED}` drain (mean of {len(limited)})"] = mean_cpu(limited)
    rows.update({name: spent for name, (_, spent) in raw.items()})
    lines = cpu_table(rows)
    lines += ["", "| runs/s | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows),
              "| | " + " | ".join(
                  [f"{statistics.median(d.rate for d in unlimited):.0f}"]
                  + ([f"{statistics.median(d.rate for d in limited):.0f}"] if limited else [])
                  + [f"{rate:.0f}" for rate, _ in raw.values()]) + " |", ""]
    return lines


def cost_rows(sizes: Sizes, costs: list[Cost], reference: list[float]) -> list[str]:
    lines = [
        (f"| admission, per_key=1, {sizes.runs_per_key} runs per key | keys | runs | "
         "fill (trigger + sweeps), ms per run | settlement per admitted run, p50 / p90 / "
         "p99 ms | finishing transaction p50 / p99 ms |"),
        "|---|---:|---:|---:|---|---|",
        *(f"| `{KEYS_FEW if c is costs[0] else KEYS_MANY}` | {c.keys:,} | {c.runs:,} | "
          f"{c.fill_s * 1000 / c.runs:.2f} | {ms(c.settle_ms, 0.5)} / "
          f"{ms(c.settle_ms, 0.9)} / {ms(c.settle_ms, 0.99)} ({c.admitted} admitted) | "
          f"{ms(c.finish_ms, 0.5)} / {ms(c.finish_ms, 0.99)} |" for c in costs),
        (f"| unlimited `{UNLIMITED}` (no settlement) | | {len(reference)} | | | "
         f"{ms(reference, 0.5)} / {ms(reference, 0.99)} |"),
    ]
    few, many = costs
    ratio = quantile(many.settle_ms, 0.5) / quantile(few.settle_ms, 0.5)
    lines += ["", (f"Settlement p50 at {many.keys:,} keys / at {few.keys:,} keys: "
                   f"**{ratio:.2f}**.")]
    return lines


if __name__ == "__main__":
    main()
