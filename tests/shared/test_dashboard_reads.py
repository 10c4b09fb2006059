"""The dashboard's reads of runs (shared/dashboard.py) against real Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from reprise_server.shared.dashboard import run_head
from reprise_server.shared.db import discard_after_commit, transaction
from reprise_server.shared.errors import RunNotFound
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import trigger_run
from tests.support.fixtures import ProjectKeys


def _auth(project: ProjectKeys, env: str) -> AuthContext:
    return AuthContext(project.project_id, project.environment_ids[env], env)


def test_looking_for_a_run_of_another_environment_neither_finds_nor_locks_it(
    project: ProjectKeys,
) -> None:
    with transaction() as session:
        run_id = trigger_run(session, _auth(project, "prod"), "test-echo", None,
                             TriggerOptions(delay="1h")).run.id
        discard_after_commit(session)
    with transaction() as looking:
        with pytest.raises(RunNotFound):
            run_head(looking, _auth(project, "dev"), run_id, lock=True)
        # Still inside that transaction: another one can take the row's lock at once.
        with transaction() as other:
            locked = other.scalars(
                select(Run.id).where(Run.id == run_id).with_for_update(nowait=True)
            ).first()
            assert locked == run_id
    with transaction() as session:
        assert run_head(session, _auth(project, "prod"), run_id, lock=True).run_id == run_id
