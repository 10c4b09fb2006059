"""Chaos: faults injected into a live stack, and what each one cost
(docs/architecture.md#faults-cost-their-length).

The scenarios and the stack they run in live in ``tests/support/chaos.py`` (the suite
runs one of them: ``tests/workers/test_faults.py``); this script runs them and prints one
row each: runs accepted (2xx), lost (never finished), re-executed (ran their function more
than once) and how long recovery took.

    .venv/bin/python bench/chaos.py                       # every scenario
    .venv/bin/python bench/chaos.py postgres-restart      # some of them
    .venv/bin/python bench/chaos.py --record              # also append to bench/RESULTS.md

Scenarios: ``postgres-restart``, ``kill-worker``, ``sigterm-worker-group``,
``redis-flushall``, ``flushall-busy-queue``, ``kill-worker-backlog`` and ``durable-waits`` (each described in
``tests/support/chaos.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.chaos import HEADER, SCENARIOS, run_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    results = []
    print(HEADER, flush=True)
    for name in args.scenarios or list(SCENARIOS):
        result = run_scenario(name)
        results.append(result)
        print(result.row(), flush=True)
    if args.record:
        from bench.timing_stack import append_results, machine, now_utc

        append_results(
            f"## Chaos (bench/chaos.py)\n\nRun {now_utc()} on {machine()}; shipped settings "
            "(heartbeat 2.5 s, stale window 10 s, sweeps every 2 s, redispatch after 15 s); "
            "reproduce with `.venv/bin/python bench/chaos.py`.\n\n"
            + HEADER + "\n" + "\n".join(r.row() for r in results) + "\n"
        )


if __name__ == "__main__":
    main()
