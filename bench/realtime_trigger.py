"""What the realtime trigger on ``runs`` (migration 0004_batches) costs a run's moves.

Every run move is one transaction updating one row (``lifecycle.py``); the trigger adds a
PL/pgSQL call, the ``realtime_xid`` stamp and a ``NOTIFY`` (which takes a queue lock at
commit). This measures single-row status-move transactions, committed one by one, with the
trigger enabled and disabled, in alternating rounds on the same embedded Postgres (so
noise hits both sides), and prints the ratio. Heartbeats (``heartbeat_at`` only) are
measured too: the trigger runs but neither stamps nor notifies.

    python -m bench.realtime_trigger [--runs 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text


def _moves(engine: object, ids: list[str], sql: str) -> float:
    started = time.perf_counter()
    with engine.connect() as connection:  # type: ignore[attr-defined]
        for run_id in ids:
            connection.execute(text(sql), {"id": run_id})
            connection.commit()
    return (time.perf_counter() - started) / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    from reprise_server.shared.migrations import upgrade
    from reprise_server.workers.devstack import EmbeddedPostgres, free_port

    with tempfile.TemporaryDirectory() as root, EmbeddedPostgres(
        Path(root) / "pg", port=free_port()
    ) as postgres:
        url = postgres.url
        upgrade(url)
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO projects (id, slug, name) VALUES ('p', 'bench', 'Bench')"))
            connection.execute(
                text("INSERT INTO environments (id, project_id, slug) VALUES ('e', 'p', 'dev')"))
            connection.execute(text(
                "INSERT INTO runs (id, project_id, environment_id, task_identifier, status,"
                " payload_type, tags, max_attempts, priority, is_test, debug_mode,"
                " trigger_function, triggered_by, schedule_token, attempt_count, duration_ms,"
                " cost_in_cents, base_cost_in_cents, depth, lineage_depth)"
                " SELECT 'run_' || g, 'p', 'e', 'bench', 'QUEUED', 'application/json', '{}',"
                " 3, 0, false, false, 'trigger', 'api', 0, 0, 0, 0, 0, 0, 0"
                " FROM generate_series(1, :n) g"
            ), {"n": args.runs})
        ids = [f"run_{i}" for i in range(1, args.runs + 1)]
        move = ("UPDATE runs SET status = CASE status WHEN 'QUEUED' THEN 'DEQUEUED'"
                " ELSE 'QUEUED' END, updated_at = now() WHERE id = :id")
        heartbeat = "UPDATE runs SET heartbeat_at = now() WHERE id = :id"
        results: dict[str, list[float]] = {k: [] for k in
                                           ("move on", "move off", "beat on", "beat off")}
        for round_number in range(args.rounds):
            # Alternate which side goes first, so a warm-up or drift favours neither.
            for state in ("on", "off") if round_number % 2 == 0 else ("off", "on"):
                with engine.begin() as connection:
                    action = "ENABLE" if state == "on" else "DISABLE"
                    connection.execute(text(f"ALTER TABLE runs {action} TRIGGER runs_realtime_change"))
                results[f"move {state}"].append(_moves(engine, ids, move))
                results[f"beat {state}"].append(_moves(engine, ids, heartbeat))
        med = {k: statistics.median(v) * 1e6 for k, v in results.items()}
        print(f"{args.runs} single-row transactions x {args.rounds} rounds (median µs each)")
        for kind in ("move", "beat"):
            on, off = med[f"{kind} on"], med[f"{kind} off"]
            print(f"  {kind:5}: trigger on {on:7.1f}  off {off:7.1f}  ratio {on / off:.3f}")
        engine.dispose()


if __name__ == "__main__":
    main()
