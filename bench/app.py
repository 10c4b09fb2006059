"""The API as benchmarks serve it: the real app plus a bare baseline endpoint.

Only for ``bench/``: ``uvicorn --factory bench.app:create_bench_app``. The baseline
``POST /bench/insert`` does one INSERT in one transaction on the same stack (same
process, middleware, engine and pool), and nothing else: the floor the accept routes
are compared against.
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from reprise_server.api.app import create_app
from reprise_server.shared.db import transaction

BASELINE_TABLE = "bench_inserts"
CREATE_BASELINE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {BASELINE_TABLE} "
    "(id text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())"
)


def create_bench_app() -> FastAPI:
    app = create_app()

    @app.post("/bench/insert", include_in_schema=False)
    def bench_insert() -> JSONResponse:
        row_id = secrets.token_hex(12)
        with transaction() as session:
            session.execute(text(f"INSERT INTO {BASELINE_TABLE} (id) VALUES (:id)"), {"id": row_id})
        return JSONResponse({"id": row_id})

    return app
