"""§2.3: a reschedule racing the run's own promotion is decided one way or the other.

Both orders are forced by holding one side's transaction open (it holds the run's row
lock) while the other side starts, and releasing it once the other side is seen waiting.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from shared.commands import service
from shared.db import db_now, transaction
from shared.projects.service import authenticate_for_run
from shared.timers.service import promote_due_runs, promote_run
from tests.support.commands import backdate_delay, commands_for, lock_waiters, trigger
from tests.support.fixtures import ProjectKeys, run_row, wait_for


def test_promotion_first_then_reschedule_is_rejected(api: Any, project: ProjectKeys) -> None:
    run_id = trigger(api, project, delay="1h")
    backdate_delay(run_id)  # its time has come
    token = run_row(run_id).schedule_token
    promoted = threading.Event()
    release = threading.Event()
    outcome: dict[str, Any] = {}

    def promotion() -> None:
        with transaction() as session:
            outcome["promoted"] = promote_run(session, run_id, token)
            promoted.set()
            release.wait(10)

    def reschedule() -> None:
        outcome["response"] = api.post(
            f"/api/v1/runs/{run_id}/reschedule", json={"delay": "1h"}, headers=project.headers()
        )

    first = threading.Thread(target=promotion)
    first.start()
    assert promoted.wait(10)
    second = threading.Thread(target=reschedule)
    second.start()
    wait_for(lambda: lock_waiters() >= 1, what="the reschedule to wait for the run's row")
    release.set()
    first.join(10)
    second.join(10)

    assert outcome["promoted"] is not None
    response = outcome["response"]
    assert response.status_code == 400
    assert response.json() == {"error": "Cannot reschedule a run that is not delayed"}
    assert run_row(run_id).status != "DELAYED"
    assert commands_for(run_id) == []


def test_reschedule_first_then_the_old_time_promotes_nothing(
    api: Any, project: ProjectKeys
) -> None:
    run_id = trigger(api, project, delay="1h")
    backdate_delay(run_id)  # the old time has come
    old_token = run_row(run_id).schedule_token
    moved = threading.Event()
    release = threading.Event()
    outcome: dict[str, Any] = {}

    def reschedule() -> None:
        with transaction() as session:
            auth, run = authenticate_for_run(session, project.keys["dev"], run_id, lock=True)
            outcome["moved"] = service.accept_reschedule(session, auth, run, "1h", "test")
            moved.set()
            release.wait(10)

    def old_timer() -> None:
        with transaction() as session:
            outcome["timer"] = promote_run(session, run_id, old_token)

    first = threading.Thread(target=reschedule)
    first.start()
    assert moved.wait(10)
    second = threading.Thread(target=old_timer)
    second.start()
    wait_for(lambda: lock_waiters() >= 1, what="the old timer to wait for the run's row")
    with transaction() as session:
        promote_due_runs(session)  # the due-sweep at the old time skips the locked row
    release.set()
    first.join(10)
    second.join(10)

    assert outcome["timer"] is None
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
    with transaction() as session:
        assert promote_run(session, run_id, old_token) is None
    with transaction() as session:
        assert promote_run(session, run_id, old_token + 1) is not None
    assert run_row(run_id).status != "DELAYED"
