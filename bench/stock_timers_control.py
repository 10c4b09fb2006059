"""The baseline control process of ``bench/reschedule_storm.py``: ``reprise control`` with
Celery's own execution strategy for the promotion timers, so it holds every ETA message it
receives until its ETA, superseded or not (Reprise's lets go of superseded ones:
workers/held_timers.py).

    python -m bench.stock_timers_control [reprise control options]
"""

from __future__ import annotations

import sys

from reprise.cli import main
from reprise_server.shared.broker import PROMOTE_RUN
from reprise_server.workers.app import app

app.tasks[PROMOTE_RUN].Strategy = "celery.worker.strategy:default"

if __name__ == "__main__":
    raise SystemExit(main(["control", *sys.argv[1:]]))
