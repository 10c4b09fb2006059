"""Liveness and readiness (§4)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from shared.broker import celery_app
from shared.db import session_factory

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Postgres and Redis are reachable")
def readyz() -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with session_factory()() as session:
            session.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"error: {type(exc).__name__}"
    try:
        with celery_app().connection_for_write() as conn:
            conn.default_channel.client.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    if ready:
        return JSONResponse({"status": "ok", **checks})
    return JSONResponse({"error": "Not ready", **checks}, status_code=503)
