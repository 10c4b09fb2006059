"""The runs list's Duration and Error cells, computed from runs and attempts in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reprise_server.shared.dashboard import error_summaries
from reprise_server.shared.runs.models import Attempt, Run
from reprise_server.shared.runs.states import AttemptStatus, RunStatus
from reprise_server.shared.runs.trace import attempts_ms

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _run(status: RunStatus, **fields: Any) -> Run:
    return Run(id=f"run_{status.value.lower()}", status=status, duration_ms=0, **fields)


def _attempt(number: int, status: AttemptStatus, start: float, end: float | None) -> Attempt:
    return Attempt(
        id=f"att_{number}", run_id="run_x", number=number, status=status,
        created_at=T0 + timedelta(seconds=start), updated_at=T0 + timedelta(seconds=start),
        started_at=T0 + timedelta(seconds=start),
        completed_at=None if end is None else T0 + timedelta(seconds=end),
    )


def test_a_run_canceled_mid_execution_counts_until_the_cancel() -> None:
    run = _run(RunStatus.CANCELED, started_at=T0, finished_at=T0 + timedelta(seconds=2.5))
    ms, running = attempts_ms(run, [_attempt(1, AttemptStatus.EXECUTING, 0, None)],
                              now=T0 + timedelta(hours=1))
    assert (ms, running) == (2500.0, False)


def test_an_executing_run_counts_until_now_and_says_it_is_running() -> None:
    run = _run(RunStatus.EXECUTING, started_at=T0)
    attempts = [_attempt(1, AttemptStatus.FAILED, 0, 1), _attempt(2, AttemptStatus.EXECUTING, 3, None)]
    ms, running = attempts_ms(run, attempts, now=T0 + timedelta(seconds=5))
    assert (ms, running) == (3000.0, True)  # 1 s, then 2 s so far; the backoff not counted


def test_the_error_cell_shows_a_failed_runs_error_name_and_first_line_only() -> None:
    failed = _run(RunStatus.FAILED, error={"name": "KeyError",
                                           "message": "'user_id'\nTraceback (most recent call last):"})
    crashed = _run(RunStatus.CRASHED, error={"message": ""})
    completed = _run(RunStatus.COMPLETED, error={"name": "ValueError", "message": "retried"})
    canceled = _run(RunStatus.CANCELED)
    found = error_summaries([failed, crashed, completed, canceled])
    assert set(found) == {failed.id, crashed.id}
    assert (found[failed.id].name, found[failed.id].first_line) == ("KeyError", "'user_id'")
    assert (found[crashed.id].name, found[crashed.id].first_line) == ("Error", "")
