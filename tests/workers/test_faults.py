"""Faults cost no more than their own length, injected into a private live stack by the
chaos scenarios of ``tests/support/chaos.py`` (embedded Postgres and Redis, real api,
worker, control and beat processes with the shipped settings)."""

from __future__ import annotations

import pytest

from tests.support.chaos import OUTAGE_SECONDS, run_scenario

pytestmark = pytest.mark.slow


def test_a_postgres_restart_under_load_loses_nothing_and_runs_nothing_twice() -> None:
    result = run_scenario("postgres-restart")
    print(result.row())
    assert result.accepted > 0
    assert result.lost == 0  # every accepted run finished
    assert result.reexecuted == 0  # no finished run ran again because its write failed
    # Nothing consumed without effect: no run waited for the 60 s redispatch backstop.
    assert result.recovery_seconds < 60 - OUTAGE_SECONDS


def test_durable_waits_survive_kill_9_flushall_and_a_postgres_restart() -> None:
    """Runs waiting between two durable steps while every process is killed, Redis is
    flushed and Postgres is down: each resumes once Postgres is back, and no step's
    function runs twice."""
    result = run_scenario("durable-waits")
    print(result.row())
    assert result.accepted == 10
    assert result.lost == 0
    assert result.reexecuted == 0
    assert result.recovery_seconds < 30
