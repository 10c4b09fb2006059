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
