"""``GET /metrics``: Prometheus exposition of this api process and of the stores.

Two parts: what this process observed (request latency, state changes it made; in
multiprocess mode — ``PROMETHEUS_MULTIPROC_DIR`` set, e.g. ``reprise api --workers N`` —
summed over its processes), and gauges read from Postgres and Redis at scrape time
(:mod:`api.store_metrics`). Worker-side series (sweeps, promotion lateness, run
state changes made on workers) are on each worker's exporter (``shared/exporter.py``).
The endpoint is unauthenticated, like ``/healthz``: keep it off your public ingress.
"""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from reprise_server.api.store_metrics import STORE_REGISTRY
from reprise_server.shared.exporter import MULTIPROC_ENV

router = APIRouter(tags=["operations"])


def _process_registry() -> CollectorRegistry:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus_metrics() -> Response:
    body = generate_latest(_process_registry()) + generate_latest(STORE_REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
