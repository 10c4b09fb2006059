"""A reschedule racing the run's own promotion, or another reschedule, is decided one way
or the other (docs/architecture.md#linearizable-reschedule).

Both orders are forced by holding one side's transaction open (it holds the run's row
lock) while the other side starts, and releasing it once the other side is seen waiting.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from reprise_server.shared import broker
from reprise_server.shared.access.service import authenticate_for_run
from reprise_server.shared.commands import service
from reprise_server.shared.commands.reschedule import result_of
from reprise_server.shared.db import db_now, transaction
from reprise_server.shared.durations import iso
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
        # The old timer does not wait for the row the reschedule holds: it promotes nothing
        # (and arms nothing again), at once; nor does the due-sweep, which skips the row.
        with transaction() as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert promote_run(session, run_id, old_token) is None
        with transaction() as session:
            promote_due_runs(session)

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


def _reschedule_locked(session: Any, project: ProjectKeys, run_id: str, delay: str) -> Any:
    """What the reschedule route does in its transaction (the key check locks the run)."""
    auth, run = authenticate_for_run(session, project.keys["dev"], run_id, lock=True)
    return service.accept_reschedule(session, auth, run, delay, "test")


def test_a_relative_delay_counts_from_the_move_not_from_the_start_of_its_request(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    lock = "SELECT id FROM runs WHERE id = :id FOR UPDATE"
    with held(lambda session: session.execute(text(lock), {"id": run_id})):
        reschedule = InThread(lambda: api.post(
            f"/api/v1/runs/{run_id}/reschedule", json={"delay": "10s"}, headers=project.headers()
        ))
        wait_for(lambda: lock_waiters() >= 1, what="the reschedule to wait for the run's row")
        released_after = _clock_timestamp()
    response = reschedule.result()
    assert response.status_code == 200, response.text
    due = run_row(run_id).delayed_until
    assert due >= released_after + timedelta(seconds=10)


def test_a_reschedule_answered_later_never_carries_an_earlier_time_for_the_same_delay(
    api: Any, project: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    armed: dict[int, datetime] = {}
    monkeypatch.setattr(broker, "arm_timer", lambda _run, token, eta: armed.update({token: eta}))
    a_began, a_go = threading.Event(), threading.Event()

    def request_a() -> Any:
        with transaction() as session:
            session.execute(text("SELECT now()"))  # A's transaction has begun: now() is fixed
            a_began.set()
            assert a_go.wait(10)
            return result_of(_reschedule_locked(session, project, run_id, "10s"))

    a = InThread(request_a)
    assert a_began.wait(10)
    # B starts after A, takes the run's row lock first and holds it while A asks for it.
    with held(lambda session: result_of(
        _reschedule_locked(session, project, run_id, "10s")
    )) as answer_b:
        a_go.set()
        wait_for(lambda: lock_waiters() >= 1, what="A to wait for the run's row")
    answer_a = a.result()

    assert answer_a["delayedUntil"] >= answer_b["delayedUntil"]
    assert answer_a["scheduleToken"] == answer_b["scheduleToken"] + 1
    row = run_row(run_id)
    assert iso(row.delayed_until) == answer_a["delayedUntil"]
    assert armed[row.schedule_token] == row.delayed_until  # A's timer is for the stored time


def _clock_timestamp() -> datetime:
    with transaction() as session:
        return session.execute(text("SELECT clock_timestamp()")).scalar_one()  # type: ignore[no-any-return]
