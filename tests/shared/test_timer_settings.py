"""Settings that keep timers inside the broker's visibility timeout, and broker transport
options that every process (api, worker, beat, flower) builds from one setting."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.beat import Scheduler
from pydantic import ValidationError

from reprise_server.shared.broker import celery_app
from reprise_server.shared.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_keep_every_eta_well_inside_the_visibility_timeout() -> None:
    settings = Settings(database_url="postgresql://x/y", redis_url="redis://x")
    assert settings.timer_horizon_seconds < settings.broker_visibility_timeout / 2
    assert settings.sweep_interval_seconds < settings.timer_horizon_seconds


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"broker_visibility_timeout": 600, "timer_horizon_seconds": 300}, "TIMER_HORIZON"),
        (
            {"broker_visibility_timeout": 600, "timer_horizon_seconds": 60,
             "retry_backoff_max_seconds": 301},
            "RETRY_BACKOFF",
        ),
        ({"timer_horizon_seconds": 10, "sweep_interval_seconds": 10}, "SWEEP_INTERVAL"),
    ],
)
def test_timers_that_could_outlive_the_visibility_timeout_are_refused(
    values: dict[str, float], named: str
) -> None:
    with pytest.raises(ValidationError, match=f"REPRISE_{named}"):
        Settings(**values)  # type: ignore[arg-type]


def test_api_worker_and_beat_connect_with_the_same_transport_options() -> None:
    from reprise_server.workers.app import app as worker_app

    expected = get_settings().broker_transport_options
    assert expected["visibility_timeout"] == get_settings().broker_visibility_timeout
    api_producer = celery_app().connection_for_write()
    worker_consumer = worker_app.connection_for_read()
    beat_producer = Scheduler(app=worker_app, lazy=True).connection
    try:
        for connection in (api_producer, worker_consumer, beat_producer):
            assert connection.transport_options == expected
    finally:
        for connection in (api_producer, worker_consumer, beat_producer):
            connection.release()


PROBE = """
import json
from celery.beat import Scheduler
from reprise_server.api.app import create_app
from reprise_server.shared.broker import celery_app
from reprise_server.workers.app import app

create_app()
connections = {
    "api": celery_app().connection_for_write(),
    "worker": app.connection_for_read(),
    "beat": Scheduler(app=app, lazy=True).connection,
}
print(json.dumps({k: c.transport_options for k, c in connections.items()}, sort_keys=True))
"""


def test_a_fresh_process_reads_the_transport_options_from_the_one_setting() -> None:
    env = {**os.environ, "REPRISE_BROKER_VISIBILITY_TIMEOUT": "1234"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["api"] == seen["worker"] == seen["beat"]
    assert seen["api"]["visibility_timeout"] == 1234


def test_only_the_broker_module_builds_a_celery_app() -> None:
    builders = []
    for package in ("api", "workers", "shared", "reprise"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Celery":
                    builders.append(str(path.relative_to(ROOT)))
    assert builders == ["shared/broker.py"]
