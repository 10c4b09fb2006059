"""Prometheus metrics observed in-process, and the helpers domain code calls.

Events (a status change, a promotion, a sweep, a request) are counted where they happen,
in whichever process that is: the api, or a worker (prefork children write to
``PROMETHEUS_MULTIPROC_DIR``, see :mod:`shared.exporter`). State that lives in the stores
(runs by status, pending commands, queue lengths) is read at scrape time instead, by
:mod:`api.store_metrics` on the api's ``/metrics``.

Every metric here has labels, so in multiprocess mode its values are created lazily, in
the process that observes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

# Seconds: from well under a sweep interval to "a timer was lost and the sweep caught it".
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
SWEEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RUN_STATE_CHANGES = Counter(
    "reprise_run_state_changes",
    "Committed run status changes, by the status entered and the task.",
    ["status", "task"],
)
PROMOTION_LATENESS = Histogram(
    "reprise_promotion_lateness_seconds",
    "How long after its delayedUntil a delayed run was promoted to QUEUED, by the path "
    "that promoted it (timer: its ETA task; sweep: the backstop sweep).",
    ["path"],
    buckets=LATENESS_BUCKETS,
)
SWEEP_DURATION = Histogram(
    "reprise_sweep_duration_seconds",
    "Duration of beat sweeps on the worker that ran them, by sweep.",
    ["sweep"],
    buckets=SWEEP_BUCKETS,
)
SWEEPS = Counter(
    "reprise_sweeps",
    "Sweeps run, by sweep and outcome (ok, skipped: another copy held the sweep's lock, error).",
    ["sweep", "outcome"],
)
SWEEP_ITEMS = Counter(
    "reprise_sweep_items",
    "What sweeps did, by sweep and item (promoted, armed, expired, republished, ...).",
    ["sweep", "item"],
)
COMMAND_APPLY_LATENCY = Histogram(
    "reprise_command_apply_latency_seconds",
    "From a command's acceptance to its application, by kind.",
    ["kind"],
    buckets=LATENESS_BUCKETS,
)
HANDOFFS = Counter(
    "reprise_handoffs",
    "Runs admitted into a slot a worker freed and handed to that worker, by what became of "
    "them (executed: by that worker; published: the hand-off ended, by its time limit, a "
    "shutdown or a database error, and the run went to its queue).",
    ["outcome"],
)
HTTP_REQUEST_DURATION = Histogram(
    "reprise_http_request_duration_seconds",
    "API request latency by method, route template and status code.",
    ["method", "route", "status"],
    buckets=HTTP_BUCKETS,
)


def observe_state_changes(status: str, task: str, count: int = 1) -> None:
    RUN_STATE_CHANGES.labels(status=status, task=task).inc(count)


def observe_promotion_lateness(
    path: str, due_times: Iterable[datetime | None], promoted_at: datetime | None = None
) -> None:
    """Observe ``promoted_at - delayed_until`` for each promoted run (``promoted_at``: the
    database's time of the promotion when known, else this process's clock)."""
    at = promoted_at or datetime.now(UTC)
    histogram = PROMOTION_LATENESS.labels(path=path)
    for due in due_times:
        if due is not None:
            histogram.observe(max((at - due).total_seconds(), 0.0))


def observe_sweep(name: str, seconds: float, outcome: str, items: Mapping[str, int]) -> None:
    SWEEP_DURATION.labels(sweep=name).observe(seconds)
    SWEEPS.labels(sweep=name, outcome=outcome).inc()
    for item, count in items.items():
        if count:
            SWEEP_ITEMS.labels(sweep=name, item=item).inc(count)


def observe_command_applied(kind: str, accepted_at: datetime, applied_at: datetime) -> None:
    COMMAND_APPLY_LATENCY.labels(kind=kind).observe(
        max((applied_at - accepted_at).total_seconds(), 0.0)
    )


def observe_handoff(outcome: str) -> None:
    HANDOFFS.labels(outcome=outcome).inc()


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUEST_DURATION.labels(method=method, route=route, status=str(status)).observe(seconds)
