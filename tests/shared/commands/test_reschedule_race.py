"""A reschedule racing the run's own promotion is decided one way or the other.

Both orders are forced by holding one side's transaction open (it holds the run's row
lock) while the other side starts, and releasing it once the other side is seen waiting.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from reprise_server.shared.access.service import authenticate_for_run
from reprise_server.shared.commands import service
from reprise_server.shared.db import db_now, transaction
from reprise_server.shared.timers.service import promote_due_runs, promote_run
from tests.support import triggers
from tests.support.commands import backdate_delay, commands_for, held
from tests.support.fixtures import ProjectKeys, lock_waiters, run_row, wait_for
from tests.support.timers import InThread


def _promote(run_id: str, token: int) -> Any:
    with transaction() as session:
        return promote_run(session, run_id, token)


def test_promotion_first_then_reschedule_is_rejected(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    backdate_delay(run_id)  # its time has come
    token = run_row(run_id).schedule_token

    with held(lambda session: promote_run(session, run_id, token)) as promoted:
        reschedule = InThread(lambda: api.post(
            f"/api/v1/runs/{run_id}/reschedule", json={"delay": "1h"}, headers=project.headers()
        ))
        wait_for(lambda: lock_waiters() >= 1, what="the reschedule to wait for the run's row")
    response = reschedule.result()

    assert promoted is not None
    assert response.status_code == 400
    assert response.json() == {"error": "Cannot reschedule a run that is not delayed"}
    assert run_row(run_id).status != "DELAYED"
    assert commands_for(run_id) == []


def test_reschedule_first_then_the_old_time_promotes_nothing(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    backdate_delay(run_id)  # the old time has come
    old_token = run_row(run_id).schedule_token

    def reschedule(session: Any) -> Any:
        auth, run = authenticate_for_run(session, project.keys["dev"], run_id, lock=True)
        return service.accept_reschedule(session, auth, run, "1h", "test")

    with held(reschedule):
        old_timer = InThread(lambda: _promote(run_id, old_token))
        wait_for(lambda: lock_waiters() >= 1, what="the old timer to wait for the run's row")
        with transaction() as session:
            promote_due_runs(session)  # the due-sweep at the old time skips the locked row
    assert old_timer.result() is None

    with transaction() as session:
        promote_due_runs(session)  # and after the commit, the run is not due
        now = db_now(session)
    row = run_row(run_id)
    assert row.status == "DELAYED"
    assert row.schedule_token == old_token + 1
    assert row.delayed_until > now + timedelta(minutes=59)
    [command] = commands_for(run_id)
    assert (command.kind, command.status) == ("reschedule", "APPLIED")

    backdate_delay(run_id)  # the new time has come
    assert _promote(run_id, old_token) is None
    assert _promote(run_id, old_token + 1) is not None
    assert run_row(run_id).status != "DELAYED"


def test_a_relative_delay_counts_from_the_request_not_from_the_end_of_its_lock_wait(
    api: Any, project: ProjectKeys
) -> None:
    import time

    from sqlalchemy import text

    run_id = triggers.via_api(api, project, delay="1h")
    lock = "SELECT id FROM runs WHERE id = :id FOR UPDATE"
    with held(lambda session: session.execute(text(lock), {"id": run_id})):
        with transaction() as session:
            sent_at = db_now(session)
        reschedule = InThread(lambda: api.post(
            f"/api/v1/runs/{run_id}/reschedule", json={"delay": "10s"}, headers=project.headers()
        ))
        wait_for(lambda: lock_waiters() >= 1, what="the reschedule to wait for the run's row")
        time.sleep(2)  # the row stays locked this long (the injected wait)
    response = reschedule.result()
    assert response.status_code == 200, response.text
    due = run_row(run_id).delayed_until
    assert timedelta(seconds=9.5) <= due - sent_at <= timedelta(seconds=11)
