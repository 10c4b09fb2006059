"""Liveness and readiness (docs/operations.md#observability).

``/healthz`` answers while the process serves HTTP (a liveness probe: restart me if not).
``/readyz`` answers 200 only when Postgres and Redis both answer (a readiness probe: send
me traffic); otherwise 503 ``{"error": "Not ready", "postgres": …, "redis": …}``. Both
checks are bounded (Redis client timeouts of 2 s, the database pool's own) so the probe
fails rather than hangs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from reprise_server.shared.broker import broker_client
from reprise_server.shared.db import session_factory
from reprise_server.shared.settings import get_settings

router = APIRouter(tags=["health"])


@dataclass(frozen=True)
class ReadinessTargets:
    database_url: str
    redis_url: str


def readiness_targets() -> ReadinessTargets:
    """The stores ``/readyz`` checks: the ones this process uses."""
    settings = get_settings()
    return ReadinessTargets(settings.database_url, settings.redis_url)


def _check_postgres(url: str) -> str:
    try:
        with session_factory(url)() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


def _check_redis(url: str) -> str:
    try:
        broker_client(url).ping()
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Postgres and Redis are reachable")
def readyz(targets: Annotated[ReadinessTargets, Depends(readiness_targets)]) -> JSONResponse:
    checks = {
        "postgres": _check_postgres(targets.database_url),
        "redis": _check_redis(targets.redis_url),
    }
    if all(value == "ok" for value in checks.values()):
        return JSONResponse({"status": "ok", **checks})
    return JSONResponse({"error": "Not ready", **checks}, status_code=503)
