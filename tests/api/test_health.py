"""``/healthz`` and ``/readyz``: readiness fails with 503 when a store is unreachable.

The unreachable store is a closed port on loopback, given to a separately created app
through the readiness dependency: the session's own servers are never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reprise_server.api.routes.health import ReadinessTargets, readiness_targets
from tests.support.live_server import free_port


def test_healthz_and_readyz_when_everything_is_up(api: Any) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "postgres": "ok", "redis": "ok"}


@pytest.fixture
def app_with_targets() -> Iterator[Any]:
    from reprise_server.api.app import create_app

    app = create_app()

    def use(targets: ReadinessTargets) -> TestClient:
        app.dependency_overrides[readiness_targets] = lambda: targets
        return TestClient(app, raise_server_exceptions=False)

    yield use
    app.dependency_overrides.clear()


def test_readyz_is_503_when_postgres_is_unreachable(app_with_targets: Any) -> None:
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    dead = f"postgresql+psycopg://reprise@127.0.0.1:{free_port()}/reprise"
    response = app_with_targets(ReadinessTargets(dead, settings.redis_url)).get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "Not ready"
    assert body["postgres"].startswith("error: ")
    assert body["redis"] == "ok"
    assert "Traceback" not in response.text


def test_readyz_is_503_when_redis_is_unreachable(app_with_targets: Any) -> None:
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    response = app_with_targets(ReadinessTargets(settings.database_url, dead)).get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "error": "Not ready",
        "postgres": "ok",
        "redis": "error: ConnectionError",
    }


def test_healthz_does_not_depend_on_the_stores(app_with_targets: Any) -> None:
    dead = ReadinessTargets(
        f"postgresql+psycopg://reprise@127.0.0.1:{free_port()}/reprise",
        f"redis://127.0.0.1:{free_port()}/0",
    )
    client = app_with_targets(dead)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
