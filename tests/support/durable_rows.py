"""Runs with a durable record built directly in Postgres (no worker): what an execution
that stopped at a wait leaves behind — the run WAITING, its attempt PAUSED, the record's
steps and the wait, and the waitpoint blocks. The dashboard's tests read these."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from reprise_server.shared.db import db_now, discard_after_commit, transaction
from reprise_server.shared.durable import tokens
from reprise_server.shared.durable.models import RunStep, WaitpointBlock
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs.models import Attempt, Run
from reprise_server.shared.runs.states import AttemptStatus, RunStatus
from tests.support import triggers
from tests.support.fixtures import ProjectKeys


def auth_of(project: ProjectKeys, env: str = "dev") -> AuthContext:
    return AuthContext(project.project_id, project.environment_ids[env], env)


def new_token(project: ProjectKeys, *, tags: list[str] | None = None,
              timeout: str | None = None, idempotency_key: str | None = None) -> str:
    with transaction() as session:
        created = tokens.create_token(session, auth_of(project), tags=tags, timeout=timeout,
                                      idempotency_key=idempotency_key)
        discard_after_commit(session)  # no timer: nothing serves them in these tests
        return created.token.id


def waiting_run(
    project: ProjectKeys, task: str = "durable-token", *, steps: Sequence[str] = ("charge",),
    wait: dict[str, Any], wait_name: str = "wait_for_token", waitpoints: Sequence[str] = (),
    payload: Any = None,
) -> str:
    """A run WAITING at ``wait`` (a recorded wait's detail, without its waitpoints) after
    the completed ``steps``, its first attempt PAUSED there, blocked on ``waitpoints``."""
    run_id = triggers.in_db(project, task, publish=False, payload=payload or {})
    with transaction() as session:
        now = db_now(session)
        start = now - timedelta(seconds=3)
        session.execute(update(Run).where(Run.id == run_id).values(
            status=RunStatus.WAITING, attempt_count=1, started_at=start,
            dequeued_at=start - timedelta(milliseconds=200)))
        session.add(Attempt(id=f"attempt_{run_id[4:]}", run_id=run_id, number=1,
                            status=AttemptStatus.PAUSED, worker="test-worker",
                            started_at=start, created_at=start,
                            completed_at=start + timedelta(seconds=1)))
        for position, name in enumerate(steps):
            at = start + timedelta(milliseconds=100 + 200 * position)
            session.add(RunStep(run_id=run_id, position=position, kind="step", name=name,
                                status="COMPLETED", output={"ok": name}, attempt_number=1,
                                created_at=at, completed_at=at + timedelta(milliseconds=150)))
        position = len(steps)
        session.add(RunStep(run_id=run_id, position=position, kind="wait", name=wait_name,
                            status="WAITING", detail={**wait, "waitpoints": list(waitpoints)},
                            attempt_number=1,
                            created_at=start + timedelta(milliseconds=100 + 200 * position)))
        session.flush()
        for waitpoint_id in waitpoints:
            session.add(WaitpointBlock(waitpoint_id=waitpoint_id, run_id=run_id,
                                       position=position))
    return run_id


def stored(model: type[Any], key: Any) -> Any:
    """The row of ``model`` with primary key ``key``, as stored now (detached)."""
    with transaction() as session:
        row = session.get(model, key)
        assert row is not None, f"no {model.__name__} {key!r}"
        session.expunge(row)
        return row
