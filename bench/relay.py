"""Messages published per command while a backlog of commands waits (target: ≤ 1.05
with a 10,000-command backlog).

Accepts N replays (the real accept path: outbox row, publish after commit) with no
control process running, so they queue up in Redis; then starts one ``reprise control``
and ``reprise beat`` with the shipped settings (relay after 3 s, sweeps every 2 s) and
waits until every command is applied. The relay sweep runs all along; each publish of a
command is counted in ``commands.publish_count``.

    .venv/bin/python bench/relay.py [--commands 10000] [--record]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing_stack import (
    append_results,
    configure,
    machine,
    now_utc,
    servers,
    start,
    stop,
    wait_until,
)

VERSION = "relay.1"


def accept_backlog(count: int) -> str:
    """A dev key's project with ``count`` accepted replays of one run; returns the key."""
    from reprise.registry import REGISTRY
    from reprise_server.shared.access.service import authenticate_for_run
    from reprise_server.shared.commands.publisher import PUBLISHER
    from reprise_server.shared.commands.schemas import ReplayRequest
    from reprise_server.shared.commands.service import accept_replay
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.service import authenticate, create_key
    from reprise_server.shared.runs.schemas import TriggerOptions
    from reprise_server.shared.runs.service import trigger_run
    from reprise_server.workers.runtime import load_task_modules, register_version

    with transaction() as session:
        key = create_key(session, "dev")
    load_task_modules("reprise_server.examples.tasks")
    register_version(REGISTRY, VERSION, ["dev"])
    with transaction() as session:
        auth = authenticate(session, key)
        source = trigger_run(session, auth, "hello-world", {"name": "bench"}, TriggerOptions()).run.id
    for _ in range(count):
        with transaction() as session:
            auth, head = authenticate_for_run(session, key, source)
            accept_replay(session, auth, head, ReplayRequest())
    assert PUBLISHER.flush(120), "the publisher did not hand every command to Redis"
    return key


def counts() -> tuple[int, int, int]:
    """(commands, applied, messages published)."""
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        row = session.execute(text(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'PENDING'), "
            "coalesce(sum(publish_count), 0) FROM commands"
        )).one()
    return int(row[0]), int(row[1]), int(row[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with servers() as (db_url, redis_url):
        env = configure(db_url, redis_url, VERSION, "reprise_server.examples.tasks")
        began = time.monotonic()
        accept_backlog(args.commands)
        accepted_in = time.monotonic() - began
        logs = Path(tempfile.mkdtemp(prefix="reprise-relay-"))
        control = start(["reprise.cli", "control"], env, logs / "control.log")
        beat = start(["reprise.cli", "beat", "--schedule", str(logs / "beat")], env,
                     logs / "beat.log")
        began = time.monotonic()
        try:
            wait_until(lambda: counts()[1] == args.commands, 1800, "every command applied")
        finally:
            stop(beat)
            stop(control)
        drained_in = time.monotonic() - began
        total, _, published = counts()
    ratio = published / total
    lines = [
        "| commands | accepted in | applied in | messages published | per command |",
        "|---:|---:|---:|---:|---:|",
        f"| {total} | {accepted_in:.1f} s | {drained_in:.1f} s | {published} | {ratio:.3f} |",
    ]
    print("\n".join(lines))
    if args.record:
        append_results(
            f"## Command relay under a backlog (bench/relay.py)\n\nRun {now_utc()} on "
            f"{machine()}; one `reprise control` (threads, 8) and beat with the shipped "
            "settings (relay after 3 s, sweeps every 2 s); the backlog is accepted with no "
            "control process running, then drained. Target: at most 1.05 messages per "
            "command. Reproduce with `.venv/bin/python bench/relay.py`.\n\n"
            + "\n".join(lines) + "\n"
        )


if __name__ == "__main__":
    main()
