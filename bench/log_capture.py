"""Run log capture: CPU per run with capture on and off, and against a ``FileHandler``.

    .venv/bin/python bench/log_capture.py            # the table (about a minute)
    .venv/bin/python bench/log_capture.py --quick    # fewer runs
    .venv/bin/python bench/log_capture.py --record   # also append to bench/RESULTS.md

Runs execute in this process through the worker's own path (``workers.execution.
execute_run``: claim, attempt, heartbeat thread, capture, outcome) against a real Postgres
(embedded unless ``REPRISE_DATABASE_URL``/``REPRISE_REDIS_URL`` are set), one after another,
each triggered beforehand. CPU is this process's (every thread: the task's, the heartbeat,
the log flusher) from ``time.process_time``, plus Postgres's own (its backends' CPU from
``/proc``, embedded Postgres only) as a separate column; a ratio counts both (the lines'
writes are most of what capture costs Postgres, which a file does not pay). Modes alternate
round by round; a row is the median of the rounds.

* **logs nothing**: ``bench-log-none`` with ``REPRISE_RUN_LOG_CAPTURE`` on, and off (the
  baseline). Target: on ≤ 1.03 x off.
* **logs 1,000 lines**: ``bench-log-lines`` (``logger.info`` with three arguments) with
  capture on and no handler of its own, against capture off with a ``logging.FileHandler``
  on the task's logger writing the same lines to a file (the baseline). Target ≤ 1.5 x.
  The marginal cost of the lines (the run's CPU minus a run that logs nothing) is shown
  too.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from bench.in_process import InProcess
from bench.timing_stack import append_results, configure, machine, now_utc, servers

VERSION = "20261206.bench"


class Bench(InProcess):
    """The two tasks of ``bench.log_tasks``; ``execute`` per run."""

    def __init__(self) -> None:
        from bench import log_tasks

        super().__init__("bench.log_tasks", VERSION, "bench-logs")
        self.logger = log_tasks.LOGGER

    def execute(self, run_ids: list[str], expect: str = "COMPLETED") -> tuple[float, float]:
        """(process CPU, Postgres CPU) per run, in ms."""
        cpu, pg = super().execute(run_ids, expect)
        return cpu / len(run_ids), pg / len(run_ids)


def capture(on: bool) -> None:
    import os

    from reprise_server.shared.settings import reset_settings_cache
    from reprise_server.workers import logcapture

    os.environ["REPRISE_RUN_LOG_CAPTURE"] = "true" if on else "false"
    reset_settings_cache()
    logcapture._flusher = None if logcapture._flusher is None else logcapture._flusher


def measure(
    bench: Bench, modes: dict[str, Callable[[], list[str]]], setups: dict[str, Callable[[], Any]],
    rounds: int,
) -> dict[str, tuple[float, float]]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in modes}
    for _ in range(rounds):
        for name, make_runs in modes.items():
            run_ids = make_runs()
            undo = setups[name]()
            try:
                samples[name].append(bench.execute(run_ids))
            finally:
                if callable(undo):
                    undo()
    return {
        name: (statistics.median(s[0] for s in values), statistics.median(s[1] for s in values))
        for name, values in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    empty_runs, line_runs, lines = (100, 10, 1000) if args.quick else (300, 30, 1000)
    logging.getLogger().setLevel(logging.WARNING)

    with servers() as (db_url, redis_url):
        configure(db_url, redis_url, VERSION, "bench.log_tasks")
        bench = Bench()
        log_file = Path(tempfile.mkdtemp(prefix="reprise-bench-logs-")) / "task.log"

        def file_handler() -> Callable[[], None]:
            capture(False)
            handler = logging.FileHandler(log_file)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            bench.logger.addHandler(handler)

            def undo() -> None:
                bench.logger.removeHandler(handler)
                handler.close()

            return undo

        # Warm up both paths (imports, connections, the flusher thread).
        capture(True)
        bench.execute(bench.trigger("bench-log-lines", 3, {"count": 10}))
        capture(False)
        bench.execute(bench.trigger("bench-log-none", 3, None))

        empty = measure(
            bench,
            {
                "off": lambda: bench.trigger("bench-log-none", empty_runs, None),
                "on": lambda: bench.trigger("bench-log-none", empty_runs, None),
            },
            {"off": lambda: capture(False), "on": lambda: capture(True)},
            args.rounds,
        )
        many = measure(
            bench,
            {
                "file": lambda: bench.trigger("bench-log-lines", line_runs, {"count": lines}),
                "on": lambda: bench.trigger("bench-log-lines", line_runs, {"count": lines}),
            },
            {"file": file_handler, "on": lambda: capture(True)},
            args.rounds,
        )

    def ratio(run: tuple[float, float], baseline: tuple[float, float]) -> float:
        return sum(run) / sum(baseline)

    rows = [
        ("logs nothing, capture off (baseline)", empty["off"], None, None),
        ("logs nothing, capture on", empty["on"], ratio(empty["on"], empty["off"]), 1.03),
        (f"logs {lines:,} lines to a FileHandler, capture off (baseline)", many["file"], None, None),
        (f"logs {lines:,} lines, captured", many["on"], ratio(many["on"], many["file"]), 1.5),
    ]
    marginal_file = many["file"][0] - empty["off"][0]
    marginal_on = many["on"][0] - empty["on"][0]
    table = [
        "| run | CPU ms/run (this process) | Postgres CPU ms/run | ratio (both) | target |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (cpu, pg), ratio, target in rows:
        table.append(
            f"| {name} | {cpu:.2f} | {pg:.2f} | {'' if ratio is None else f'{ratio:.3f}'} "
            f"| {'' if target is None else f'≤ {target}'} |"
        )
    marginal = (
        f"Marginal CPU of the {lines:,} lines alone (run minus a run that logs nothing, same "
        f"mode): FileHandler {marginal_file:.2f} ms, captured {marginal_on:.2f} ms "
        f"({marginal_on / marginal_file:.2f} x); per line {marginal_on * 1000 / lines:.1f} µs "
        f"captured vs {marginal_file * 1000 / lines:.1f} µs to a file."
    )
    print("\n".join(table))
    print(marginal)
    if args.record:
        append_results(
            "## Run log capture (`bench/log_capture.py`)\n\n"
            f"Run {now_utc()} on {machine()}; `.venv/bin/python bench/log_capture.py"
            f"{' --quick' if args.quick else ''}`; embedded Postgres unless URLs were set; "
            f"{args.rounds} rounds alternating the modes, median; {empty_runs} empty runs and "
            f"{line_runs} runs of {lines:,} lines per mode per round, executed in-process by "
            "`workers.execution.execute_run` (default flush settings: 500 lines / 200 ms).\n\n"
            + "\n".join(table) + "\n\n" + marginal + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
