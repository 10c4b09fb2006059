"""The worker's Prometheus exporter (``REPRISE_WORKER_METRICS_PORT``).

Why an exporter and not a push: Prometheus pulls, each worker pod/container is a target
of its own (scaled with ``--scale worker=N`` or KEDA), and a pushgateway would keep the
series of workers long gone. A prefork worker executes tasks in child processes, so the
metrics use prometheus_client's multiprocess mode: every child writes its values to files
in ``PROMETHEUS_MULTIPROC_DIR`` and the exporter, in the worker's main process, sums them
on each scrape.

Multiprocess mode is chosen when ``prometheus_client`` is first imported, so
:func:`start_worker_exporter` must run before anything imports it: ``reprise worker``
calls it first thing. This module therefore imports nothing that imports
``prometheus_client`` at module level.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from reprise_server.shared.settings import Settings, get_settings

log = logging.getLogger("reprise.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Path:
    """Use ``PROMETHEUS_MULTIPROC_DIR`` if set (emptied: values of a previous run of this
    process must not be summed in), else a fresh private directory removed at exit."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for entry in path.glob("*.db"):
            entry.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="reprise-metrics-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ[MULTIPROC_ENV] = str(path)
    return path


def start_worker_exporter(settings: Settings | None = None) -> int | None:
    """Serve ``/metrics`` for this worker and its pool processes; returns the port, or
    None when ``REPRISE_WORKER_METRICS_PORT`` is 0 (off) or the port is taken (logged:
    a worker without metrics still does its work)."""
    settings = settings or get_settings()
    if not settings.worker_metrics_port:
        return None
    if "prometheus_client" in sys.modules and MULTIPROC_ENV not in os.environ:
        log.warning("worker metrics exporter not started: prometheus_client was imported first")
        return None
    prepare_multiprocess_dir()
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(settings.worker_metrics_port, registry=registry)
    except OSError as exc:
        log.warning(
            "worker metrics exporter not started on port %d: %s", settings.worker_metrics_port, exc
        )
        return None
    log.info("worker metrics on :%d/metrics", settings.worker_metrics_port)
    return settings.worker_metrics_port
