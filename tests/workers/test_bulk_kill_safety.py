"""A control process killed in the middle of a bulk action: the batch it was applying
rolls back, and the next control process resumes from the last committed batch without
acting on any run twice. The interleaving is forced: the test holds a row lock
the batch needs, waits until the batch is blocked on it, then kills the process."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text

from tests.support import triggers
from tests.support.fixtures import ProjectKeys, lock_waiters, run_row, wait_for
from tests.support.processes import reprise_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@contextmanager
def row_locked(sql: str, **params: Any) -> Iterator[None]:
    """Hold ``SELECT … FOR UPDATE`` in another connection until the block ends."""
    from reprise_server.shared.db import get_engine

    with get_engine().connect() as conn:
        conn.execute(text(sql), params)
        try:
            yield
        finally:
            conn.rollback()


def _bulk_state(bulk_id: str) -> Any:
    from reprise_server.shared.bulk.models import BulkAction
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return session.get(BulkAction, bulk_id)


def _relay_now(monkeypatch: pytest.MonkeyPatch) -> int:
    """The relay sweep, at once: the killed process's message is not redelivered before
    the visibility timeout, so the sweep is what gets the pending batch applied again."""
    from reprise_server.shared.commands.service import relay_pending_commands
    from reprise_server.shared.db import transaction
    from reprise_server.shared.settings import get_settings

    monkeypatch.setattr(get_settings(), "command_relay_after_seconds", 0.0)
    with transaction() as session:
        return relay_pending_commands(session)


def _batch_commands(bulk_id: str) -> list[tuple[int, str]]:
    from reprise_server.shared.db import transaction

    with transaction() as session:
        rows = session.execute(
            text("SELECT (arguments->>'batch')::int, status FROM commands "
                 "WHERE kind = 'bulk' AND run_id = :id ORDER BY 1"), {"id": bulk_id})
        return [(int(n), str(s)) for n, s in rows]


def _kill_mid_batch(api: Any, project: ProjectKeys, own_queues: str, body: dict[str, Any],
                    lock_sql: str, lock_params: dict[str, Any], *, committed: int,
                    monkeypatch: pytest.MonkeyPatch) -> str:
    env = {"REPRISE_QUEUE_PREFIX": own_queues, "REPRISE_BULK_BATCH_SIZE": "2"}
    control_process = reprise_process("control", env=env, own_group=True)
    with row_locked(lock_sql, **lock_params), control_process as control:
        response = api.post("/api/v1/bulk-actions", json=body, headers=project.headers())
        assert response.status_code == 202, response.text
        bulk_id = str(response.json()["id"])

        def blocked() -> bool:
            assert control.alive(), control.log()
            state = _bulk_state(bulk_id)
            return lock_waiters() >= 1 and state.success_count == committed

        wait_for(blocked, timeout=60, interval=0.05, what="the batch blocked on the lock")
        control.signal_group(signal.SIGKILL)
        control.wait(10)
    # The killed batch wrote nothing: only the batches committed before it count.
    assert _bulk_state(bulk_id).success_count == committed
    assert _bulk_state(bulk_id).status == "PENDING"
    with reprise_process("control", env=env) as again:
        assert _relay_now(monkeypatch) == 1
        wait_for(lambda: again.alive() and _bulk_state(bulk_id).status == "COMPLETED",
                 timeout=60, interval=0.05, what=f"the bulk action to complete: {again.log()}")
    return bulk_id


def test_bulk_cancel_killed_mid_batch_resumes_without_acting_twice(
    api: Any, project: ProjectKeys, own_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [triggers.via_api(api, project, delay="1h") for _ in range(6)]
    # Newest first in batches of 2: [5, 4] commits, then [3, 2] blocks on run 2's lock
    # with run 3 already canceled in its (doomed) transaction.
    bulk_id = _kill_mid_batch(
        api, project, own_queues, {"action": "cancel", "filter": {"status": "DELAYED"}},
        "SELECT id FROM runs WHERE id = :id FOR UPDATE", {"id": runs[2]},
        committed=2, monkeypatch=monkeypatch,
    )

    state = _bulk_state(bulk_id)
    # Run 3 canceled twice would count a failure ("already CANCELED").
    assert (state.total_count, state.success_count, state.failure_count) == (6, 6, 0)
    assert {run_row(r).status for r in runs} == {"CANCELED"}
    assert _batch_commands(bulk_id) == [(0, "APPLIED"), (1, "APPLIED"), (2, "APPLIED")]


def test_bulk_replay_killed_mid_batch_makes_exactly_one_replay_per_run(
    api: Any, project: ProjectKeys, own_queues: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [triggers.via_api(api, project, delay="1h", tags=["kill"]) for _ in range(4)]
    # Creating a run takes a key-share lock on its project's row (the bulk action's own
    # rows reference only the environment): held FOR UPDATE by the test, the first batch
    # blocks on its first new run.
    bulk_id = _kill_mid_batch(
        api, project, own_queues, {"action": "replay", "filter": {"tag": "kill"}},
        "SELECT id FROM projects WHERE id = :id FOR UPDATE",
        {"id": project.project_id}, committed=0, monkeypatch=monkeypatch,
    )

    state = _bulk_state(bulk_id)
    assert (state.total_count, state.success_count, state.failure_count) == (4, 4, 0)
    from reprise_server.shared.db import transaction

    with transaction() as session:
        replays = session.execute(
            text("SELECT replayed_from, count(*) FROM runs WHERE replayed_from IS NOT NULL "
                 "GROUP BY 1")).all()
    assert dict(replays) == dict.fromkeys(runs, 1)
