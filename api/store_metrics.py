"""Gauges read from Postgres and Redis when Prometheus scrapes the api's ``/metrics``.

Reading at scrape time (rather than keeping counters in step with every write) makes the
numbers the stores' own truth, the same on every api replica, and free between scrapes:
one grouped query over ``runs``, one over pending ``commands`` (a partial index), one over
waiting waitpoint tokens, a count of the realtime listeners, one each for the concurrency
limit and queue gauges (grouped over the keys, the line and the active runs), and one
Redis pipeline of ``LLEN``. A store that does not answer is reported by
``reprise_store_up{store=…} 0`` instead of failing the whole scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reprise_server.shared import broker
from reprise_server.shared.commands.models import CommandKind
from reprise_server.shared.db import session_factory
from reprise_server.shared.metrics import repository
from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.metrics")


class StoreCollector(Collector):
    def describe(self) -> Iterable[Metric]:
        # Nothing at registration: describing would query the stores at import time.
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "reprise_store_up", "Whether the last scrape could read the store.", labels=["store"]
        )
        postgres_ok = True
        try:
            yield from self._from_postgres()
        except Exception as exc:
            postgres_ok = False
            log.warning("metrics: postgres unavailable (%s)", type(exc).__name__)
        up.add_metric(["postgres"], 1.0 if postgres_ok else 0.0)
        redis_ok = True
        try:
            yield from self._from_redis()
        except Exception as exc:
            redis_ok = False
            log.warning("metrics: redis unavailable (%s)", type(exc).__name__)
        up.add_metric(["redis"], 1.0 if redis_ok else 0.0)
        yield up

    def _from_postgres(self) -> Iterator[Metric]:
        with session_factory()() as session:
            runs = repository.count_runs(session)
            pending = repository.pending_commands(session)
            flow_limits = repository.flow_limits(session)
            flow_queues = repository.flow_queues(session)
            tokens = repository.waiting_tokens(session)
            listeners = repository.realtime_listeners(session)
        by_status = GaugeMetricFamily(
            "reprise_runs",
            "Runs by project, environment, task and internal status (read from Postgres).",
            labels=["project", "environment", "task", "status"],
        )
        for row in runs:
            by_status.add_metric([row.project, row.environment, row.task, row.status], row.count)
        counts = GaugeMetricFamily(
            "reprise_commands_pending",
            "Accepted replay/reschedule commands not applied yet, by kind.",
            labels=["kind"],
        )
        lag = GaugeMetricFamily(
            "reprise_command_apply_lag_seconds",
            "Age of the oldest pending command, by kind (0 when none is pending).",
            labels=["kind"],
        )
        seen = {p.kind: p for p in pending}
        for kind in sorted({k.value for k in CommandKind} | set(seen)):
            found = seen.get(kind)
            counts.add_metric([kind], found.count if found else 0)
            lag.add_metric([kind], found.oldest_age_seconds if found else 0.0)
        waiting = GaugeMetricFamily(
            "reprise_waitpoint_tokens_waiting",
            "Waitpoint tokens not completed nor timed out yet, by project and environment.",
            labels=["project", "environment"],
        )
        for token_row in tokens:
            waiting.add_metric([token_row.project, token_row.environment], token_row.count)
        realtime = GaugeMetricFamily(
            "reprise_realtime_listeners",
            "Api processes listening for run changes (a realtime subscription waits, or did "
            "within a minute): while any is, every run write sends a notification.",
        )
        realtime.add_metric([], listeners)
        yield by_status
        yield counts
        yield lag
        yield waiting
        yield realtime
        yield from _flow_gauges("reprise_concurrency_limit", "concurrency limit", "limit",
                                flow_limits)
        yield from _flow_gauges("reprise_run_queue", "run queue", "queue", flow_queues)

    def _from_redis(self) -> Iterator[Metric]:
        settings = get_settings()
        client = broker.broker_client(settings.redis_url)
        lengths = broker.queue_lengths(client, broker.queue_names(settings).values())
        unacked = int(client.hlen(broker.UNACKED_KEY))
        queues = GaugeMetricFamily(
            "reprise_queue_length",
            "Messages waiting in each Celery queue (Redis list length).",
            labels=["queue"],
        )
        for name, length in lengths.items():
            queues.add_metric([name], length)
        held = GaugeMetricFamily(
            "reprise_broker_unacked_messages",
            "Messages delivered to workers and not acknowledged yet: running tasks, "
            "prefetched messages and the ETA timers workers hold.",
        )
        held.add_metric([], unacked)
        return iter((queues, held))


def _flow_gauges(prefix: str, what: str, label: str, rows: list[repository.FlowGauge]
                 ) -> Iterator[Metric]:
    """The five gauges of each concurrency limit or run queue, labelled by project,
    environment and its name: never by concurrency key (unbounded), nor by run."""
    labels = ["project", "environment", label]
    running = GaugeMetricFamily(f"{prefix}_running",
                                f"Runs holding a slot of each {what} (claimed or executing).",
                                labels=labels)
    queued = GaugeMetricFamily(f"{prefix}_queued", f"Runs waiting in each {what}.",
                               labels=labels)
    bound = GaugeMetricFamily(
        f"{prefix}_bound",
        f"The total bound in force of each {what} (its override, else its declared bound); "
        "absent for an unbounded one.", labels=labels)
    paused = GaugeMetricFamily(f"{prefix}_paused", f"1 while the {what} is paused, else 0.",
                               labels=labels)
    oldest = GaugeMetricFamily(
        f"{prefix}_oldest_wait_seconds",
        f"Age of the oldest run waiting in each {what} (0 when none waits).", labels=labels)
    for row in rows:
        values = [row.project, row.environment, row.name]
        running.add_metric(values, row.running)
        queued.add_metric(values, row.queued)
        if row.bound is not None:
            bound.add_metric(values, row.bound)
        paused.add_metric(values, 1.0 if row.paused else 0.0)
        oldest.add_metric(values, row.oldest_wait_seconds)
    return iter((running, queued, bound, paused, oldest))


STORE_REGISTRY = CollectorRegistry(auto_describe=False)
STORE_REGISTRY.register(StoreCollector())
