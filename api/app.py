"""The FastAPI application: routes, the error shape, and the body size limit."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from reprise_server.api import dashboard
from reprise_server.api.instrumentation import RequestMetrics
from reprise_server.api.middleware import BodySizeLimit
from reprise_server.api.routes import (
    auth,
    batches,
    bulk,
    commands,
    concurrency_limits,
    health,
    packets,
    queues,
    realtime,
    run_edits,
    run_logs,
    runs,
    schedules,
    strait,
    tasks,
    waitpoints,
)
from reprise_server.api.routes import metrics as metrics_routes
from reprise_server.shared.errors import RepriseError
from reprise_server.shared.packets.service import OBJECT_ROUTE
from reprise_server.shared.settings import get_settings

log = logging.getLogger("reprise.api")

# Strait's routes (docs/api.md#strait).
STRAIT_PREFIX = "/v1/"


def _error(status: int, message: str, headers: dict[str, str] | None = None,
           request: Request | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if request is not None and request.url.path.startswith(STRAIT_PREFIX):
        # Strait answers errors as RFC 9457 problems (huma): its own clients read `error`,
        # `message` or `detail`, typed clients `status`. Both shapes, in one body.
        body |= {"title": HTTPStatus(status).phrase, "status": status, "detail": message}
    return JSONResponse(body, status_code=status, headers=headers)


def _declare_bearer_auth(app: FastAPI) -> None:
    """Every route takes ``Authorization: Bearer <secret key>`` (reads also a public
    token): say so in the OpenAPI document, so "Try it out" in /docs can send one."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "secretKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A secret key (tr_dev_…, tr_stg_…, tr_prod_…); reads "
                    "also take a public access token (the x-trigger-jwt of a trigger).",
                }
            }
            schema["security"] = [{"secretKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app() -> FastAPI:
    settings = get_settings()
    # /docs and /redoc from assets served by the api itself (fastapi-offline bundles
    # Swagger UI and ReDoc): they work without internet access.
    app = FastAPIOffline(
        title="Reprise",
        version="0.1.0",
        description="Trigger.dev-compatible REST API for background-job runs, "
        "with durable replay and reschedule.",
    )
    _declare_bearer_auth(app)

    @app.exception_handler(RepriseError)
    async def domain_error(request: Request, exc: RepriseError) -> JSONResponse:
        return _error(exc.status_code, exc.message, request=request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, f"{where}: {first.get('msg', 'is invalid')}", request=request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None),
                      request=request)

    @app.exception_handler(OperationalError)
    async def database_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return _error(503, "Service temporarily unavailable", {"x-should-retry": "true"})

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return _error(503, "Service temporarily unavailable", {"x-should-retry": "true"})
        log.exception("database error")
        return _error(500, "Internal server error")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "Internal server error")

    app.include_router(health.router)
    app.include_router(metrics_routes.router)
    app.include_router(tasks.router)
    app.include_router(runs.router)
    app.include_router(run_logs.router)
    app.include_router(commands.router)
    app.include_router(strait.router)
    app.include_router(packets.router)
    app.include_router(run_edits.router)
    app.include_router(auth.router)
    app.include_router(batches.router)
    app.include_router(realtime.router)
    app.include_router(schedules.router)
    app.include_router(bulk.router)
    app.include_router(queues.router)
    app.include_router(concurrency_limits.router)
    app.include_router(waitpoints.router)
    app.include_router(dashboard.router)
    app.include_router(dashboard.favicon_router)
    packet_limit = settings.max_packet_bytes
    packet_refusal = (
        f"Packet too large: the maximum is {packet_limit} bytes (REPRISE_MAX_PACKET_BYTES)"
    )
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes,
        by_prefix={OBJECT_ROUTE: (packet_limit, packet_refusal)},
    )
    # Outermost: times every request, including those refused for their size.
    app.add_middleware(RequestMetrics)
    return app
