"""Writing a run's log lines as the worker's capture would (straight into ``run_logs``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def add_line(run_id: str, message: str, *, attempt: int = 1, level: str = "INFO",
             logger: str = "app", exception: str | None = None,
             attributes: dict[str, Any] | None = None,
             logged_at: datetime | None = None) -> int:
    """Insert one line of ``run_id``; its seq."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runlogs.models import RunLog
    from reprise_server.shared.runs import repository as repo

    with transaction() as session:
        run = repo.get_run(session, None, run_id)
        assert run is not None, run_id
        line = RunLog(run_id=run_id, environment_id=run.environment_id, attempt_number=attempt,
                      logged_at=logged_at or datetime.now(UTC), level=level, logger=logger,
                      message=message, exception=exception, attributes=attributes)
        session.add(line)
        session.flush()
        return int(line.seq)
