"""Runs for the Overview's tests, moved through the lifecycle in the database: failures
with a chosen error and status, completions, and timestamps moved back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.support import triggers
from tests.support.fixtures import ProjectKeys

WORKER = "ov-test-worker"


def fail_in_db(project: ProjectKeys, task: str, name: str, message: str, *,
               status: str = "FAILED", env: str = "dev") -> str:
    """A run of ``task`` that ends in ``status`` with the error, moved in the database."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.ids import new_attempt_id
    from reprise_server.shared.runs import lifecycle
    from reprise_server.shared.settings import get_settings

    run_id = triggers.in_db(project, task, env, publish=False, payload={})
    error = {"name": name, "message": message, "stackTrace": f"Traceback: {name}"}
    with transaction() as session:
        assert lifecycle.claim_and_start(session, run_id, WORKER,
                                         get_settings().worker_version, [task],
                                         new_attempt_id())
        if status == "FAILED":
            assert lifecycle.fail(session, run_id, WORKER, error, 50)
        elif status == "TIMED_OUT":
            assert lifecycle.time_out(session, run_id, WORKER, error, 50)
        else:
            assert lifecycle.crash(session, run_id, error)
    return run_id


def complete_in_db(project: ProjectKeys, task: str, elapsed_ms: int = 100) -> str:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.ids import new_attempt_id
    from reprise_server.shared.runs import lifecycle
    from reprise_server.shared.settings import get_settings

    run_id = triggers.in_db(project, task, publish=False, payload={})
    with transaction() as session:
        assert lifecycle.claim_and_start(session, run_id, WORKER,
                                         get_settings().worker_version, [task],
                                         new_attempt_id())
        assert lifecycle.complete_attempt(session, run_id, WORKER, 1, {"ok": True},
                                          elapsed_ms) == (True, True)
    return run_id


def set_times(run_id: str, **columns: Any) -> None:
    """Move a run's timestamps (``created_at=-7200`` etc.: seconds from now)."""
    from reprise_server.shared.db import transaction

    sets = ", ".join(f"{name} = now() + make_interval(secs => :{name})" for name in columns)
    with transaction() as session:
        session.execute(text(f"UPDATE runs SET {sets} WHERE id = :id"),
                        {"id": run_id, **columns})
