"""``runs.poll`` of the SDK and ``reprise runs wait`` (run as a subprocess) against a live API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from reprise.client import Client
from reprise.errors import NotFoundError, RunPollTimeoutError
from reprise.models import FINAL_STATUSES, Run
from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e


def reprise_cli(live_server: LiveServer, key: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``reprise ARGV`` in a child process, connected by flags (no dev stack, no env vars)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REPRISE_API_URL", "REPRISE_API_KEY", "TRIGGER_API_URL",
                        "TRIGGER_SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "reprise.cli", *argv, "--api-url", live_server.base_url,
         "--key", key],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )


def test_final_statuses_are_the_runs_terminal_ones() -> None:
    assert {"COMPLETED", "FAILED", "CANCELED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED",
            "TIMED_OUT"} == FINAL_STATUSES


def test_poll_returns_the_final_run_completed_or_failed(
    client: Client, celery_worker: Any
) -> None:
    ok = client.tasks.trigger("test-sleep", {"seconds": 0.5}).id
    bad = client.tasks.trigger("test-fail-until", {}, max_attempts=1).id

    done = client.runs.poll(ok, timeout=60, interval=0.1)
    failed = client.runs.poll(bad, timeout=60, interval=0.1)

    assert isinstance(done, Run)
    assert (done.id, done.status, done.output) == (ok, "COMPLETED", {"slept": 0.5, "attempt": 1})
    assert (failed.id, failed.status) == (bad, "FAILED")
    assert failed.error is not None


def test_poll_of_a_canceled_run_returns_at_once(client: Client) -> None:
    run_id = client.tasks.trigger("test-echo", delay="1h").id
    client.runs.cancel(run_id)

    started = time.monotonic()
    assert client.runs.poll(run_id, timeout=5).status == "CANCELED"
    assert time.monotonic() - started < 2


def test_poll_raises_a_typed_timeout_with_the_run_as_last_read(client: Client) -> None:
    run_id = client.tasks.trigger("test-echo", delay="1h").id

    started = time.monotonic()
    with pytest.raises(RunPollTimeoutError) as caught:
        client.runs.poll(run_id, timeout=0.5, interval=0.1)

    assert 0.5 <= time.monotonic() - started < 3
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.run_id == run_id
    assert isinstance(caught.value.run, Run)
    assert caught.value.run.status == "DELAYED"
    assert "not final after 0.5s (still DELAYED)" in str(caught.value)


def test_poll_of_an_unknown_run_and_a_bad_interval(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.runs.poll("run_" + "b" * 24, timeout=1)
    with pytest.raises(ValueError, match="interval"):
        client.runs.poll("run_" + "b" * 24, interval=0)


def test_cli_runs_wait_exit_status_by_final_status_and_on_timeout(
    client: Client, celery_worker: Any, live_server: LiveServer, project: ProjectKeys
) -> None:
    key = project.keys["dev"]
    ok = client.tasks.trigger("test-sleep", {"seconds": 0.5}).id
    result = reprise_cli(live_server, key, "runs", "wait", ok, "--timeout", "60",
                         "--interval", "0.2")
    assert (result.returncode, result.stdout) == (0, "COMPLETED\n")

    bad = client.tasks.trigger("test-fail-until", {}, max_attempts=1).id
    result = reprise_cli(live_server, key, "runs", "wait", bad, "--interval", "0.2")
    assert (result.returncode, result.stdout) == (1, "FAILED\n")

    delayed = client.tasks.trigger("test-echo", delay="1h").id
    result = reprise_cli(live_server, key, "runs", "wait", delayed, "--timeout", "0.5",
                         "--interval", "0.1")
    assert result.returncode == 3
    assert result.stdout == ""
    assert f"run {delayed} was not final after 0.5s (still DELAYED)" in result.stderr

    result = reprise_cli(live_server, key, "runs", "wait", delayed, "--timeout", "0")
    assert result.returncode == 2
    assert "must be more than 0 seconds" in result.stderr
