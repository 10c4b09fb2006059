"""CPU per trigger (or replay) of one api process, and of the Postgres backends serving it,
for two checkouts side by side: an A/B of a change to the accept path.

    .venv/bin/python bench/api_cpu.py                          # this checkout alone
    .venv/bin/python bench/api_cpu.py --against ../main        # main first, then this one
    .venv/bin/python bench/api_cpu.py --against ../main --rounds 9 --requests 1000
    .venv/bin/python bench/api_cpu.py --against ../main --against ../other   # three ways
    .venv/bin/python bench/api_cpu.py --against ../main --route replay

Each checkout's api (``uvicorn bench.app``, one process, its own ``.venv``) serves the
same scratch database and Redis; rounds alternate between them (each
round in the other order), so the machine's noise
falls on both alike. Per round: 16 warm-up requests, then ``--requests`` triggers of
``bench-noop`` from 16 keep-alive clients; the api's CPU from ``/proc/<pid>/stat``, the
backends' from theirs (the connections the api holds, found by their client port). With
``--route replay``, each round first triggers ``--requests`` runs (not measured), then
measures ``POST /api/v1/runs/{id}/replay`` of each (no control process runs: the commands
stay pending, as the messages stay unconsumed). Medians
over the rounds, and each round's ratio B/A. Needs ``REPRISE_DATABASE_URL`` and
``REPRISE_REDIS_URL`` (a scratch database is created and dropped) or starts embedded
servers. No worker runs: the published messages are dropped with the Redis database.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.throughput import CLIENTS, closed_loop, cpu_seconds, sql
from bench.timing_stack import configure, servers, stop, wait_until

VERSION = "api-cpu.1"
TRIGGER = ("/api/v1/tasks/bench-noop/trigger", b'{"payload": null}')


def start_api(root: Path, env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx

    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(root / ".venv" / "bin" / "python"), "-m", "uvicorn", "--factory",
             "bench.app:create_bench_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", "--no-access-log", "--workers", "1"],
            cwd=root, env={**env, "PYTHONPATH": str(root)}, stdout=out,
            stderr=subprocess.STDOUT,
        )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, f"the api of {root}")
    return proc


def backends(api_pid: int) -> list[int]:
    """The Postgres backends of the api's pooled connections."""
    import psutil

    ports = [c.laddr.port for c in psutil.Process(api_pid).net_connections("tcp")
             if c.raddr and c.raddr.port == 5432]
    if not ports:
        return []
    return [pid for (pid,) in sql(
        "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(:ports)", ports=ports
    )]


def _requests(port: int, key: str, count: int, route: str) -> list[tuple[str, bytes]]:
    if route == "trigger":
        return [TRIGGER] * count
    [(since,)] = sql("SELECT now()")
    closed_loop(port, key, [TRIGGER] * count)
    ids = [row[0] for row in sql("SELECT id FROM runs WHERE created_at >= :since", since=since)]
    return [(f"/api/v1/runs/{run_id}/replay", b"{}") for run_id in ids]


def measure(proc: subprocess.Popen[bytes], port: int, key: str, count: int,
            route: str) -> tuple[float, float]:
    """(api ms, backends ms) per request of ``route``."""
    # Warm-up: the pool's connections open.
    closed_loop(port, key, _requests(port, key, CLIENTS, route))
    requests = _requests(port, key, count, route)
    pids = backends(proc.pid)
    before = cpu_seconds(proc.pid), sum(cpu_seconds(pid) for pid in pids)
    errors = closed_loop(port, key, requests)
    after = cpu_seconds(proc.pid), sum(cpu_seconds(pid) for pid in pids)
    if errors:
        print(f"  {errors} errors", flush=True)
    return ((after[0] - before[0]) * 1000 / count, (after[1] - before[1]) * 1000 / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, action="append", default=[],
                        help="another checkout (with its .venv) to compare with; repeatable")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--route", choices=("trigger", "replay"), default="trigger")
    args = parser.parse_args()
    roots = [*(path.resolve() for path in args.against), ROOT]
    logs = Path(tempfile.mkdtemp(prefix="reprise-api-cpu-"))
    from reprise_server.workers.devstack import free_port

    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "bench.throughput_tasks")
        from reprise_server.shared.db import transaction
        from reprise_server.shared.projects.service import create_key
        from reprise_server.workers.runtime import load_task_modules, register_version

        with transaction() as session:
            key = create_key(session, "dev")
        register_version(load_task_modules("bench.throughput_tasks"), VERSION, ["dev"])
        apis = []
        try:
            for i, root in enumerate(roots):
                port = free_port()
                apis.append((root, start_api(root, env, port, logs / f"api-{i}.log"), port))
            figures: dict[Path, list[tuple[float, float]]] = {root: [] for root in roots}
            for n in range(args.rounds):
                # Each round starts with the next checkout: none always goes first.
                for root, proc, port in apis[n % len(apis):] + apis[:n % len(apis)]:
                    figures[root].append(measure(proc, port, key, args.requests, args.route))
                sql("DELETE FROM commands; DELETE FROM runs")
                line = "  ".join(f"{root.name}: api {a:.3f} pg {p:.3f}"
                                 for root in roots for a, p in [figures[root][-1]])
                print(f"round {n + 1}: {line}", flush=True)
        finally:
            for _, proc, _ in apis:
                stop(proc)
        print(f"\nCPU ms per {args.route}, median of {args.rounds} rounds of {args.requests}:")
        for root in roots:
            api = statistics.median(a for a, _ in figures[root])
            pg = statistics.median(p for _, p in figures[root])
            print(f"  {root}: api {api:.3f}  postgres backends {pg:.3f}")
        base = figures[roots[0]]
        for root in roots[1:]:
            ratio = statistics.median(y[0] / x[0] for x, y in zip(base, figures[root], strict=True))
            pg_ratio = statistics.median(y[1] / x[1] for x, y in zip(base, figures[root],
                                                                     strict=True) if x[1])
            print(f"  {root.name} / {roots[0].name}, per round, median: "
                  f"api {ratio:.3f}  postgres {pg_ratio:.3f}")


if __name__ == "__main__":
    main()
