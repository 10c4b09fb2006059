"""A run's creation context read in its INSERT (``shared.runs.service.create_run``): one
statement per trigger once the process has seen the task's context, and never a run built
from a context that changed since (a version registered, a queue paused, a TTL changed)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from reprise.registry import REGISTRY, Registry, TaskDefinition
from reprise_server.shared.db import transaction
from reprise_server.shared.flow import queues
from reprise_server.shared.projects.models import Environment
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs.options import RunOptions
from reprise_server.shared.runs.repository import DuplicateRun
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import NewRun, create_run, trigger_run
from reprise_server.workers.runtime import register_version
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row
from tests.support.statements import sent_statements


def _echo_declaring(**options: Any) -> Registry:
    """A catalogue whose test-echo declares ``options``."""
    return Registry({"test-echo": TaskDefinition(id="test-echo", fn=lambda p, c: p, **options)})


def test_a_trigger_is_one_statement_once_the_process_has_seen_its_task(
    project: ProjectKeys,
) -> None:
    triggers.in_db(project, publish=False)  # the first reads the context on its own
    with sent_statements(this_thread=True) as sent:
        run_id = triggers.in_db(project, publish=False)
    assert len(sent) == 1, sent
    assert "FROM environments" in sent[0]  # the INSERT reads the context itself
    run = run_row(run_id)
    assert run.status == "QUEUED"
    assert run.created_at == run.updated_at == run.queued_at  # the INSERT's clock


def test_a_version_registered_since_the_last_trigger_is_the_one_the_next_uses(
    project: ProjectKeys,
) -> None:
    env = ["dev", "staging", "prod"]
    register_version(_echo_declaring(max_attempts=7, queue="first"), "ctx.1", env,
                     project.project_id)
    first = run_row(triggers.in_db(project, publish=False))
    assert (first.max_attempts, first.queue) == (7, "first")

    register_version(_echo_declaring(max_attempts=2, queue="second"), "ctx.2", env,
                     project.project_id)
    second = run_row(triggers.in_db(project, publish=False))
    assert (second.max_attempts, second.queue, second.status) == (2, "second", "QUEUED")

    # A version without the task: the next run waits for one, as it would have unprimed.
    register_version(Registry({"hello-world": TaskDefinition(id="hello-world", fn=lambda p, c: p)}),
                     "ctx.3", env, project.project_id)
    waiting = run_row(triggers.in_db(project, publish=False))
    assert waiting.status == "PENDING_VERSION"

    register_version(REGISTRY, "ctx.4", env, project.project_id)
    assert run_row(triggers.in_db(project, publish=False)).status == "QUEUED"


def test_a_queue_paused_since_the_last_trigger_holds_the_next_run(project: ProjectKeys) -> None:
    triggers.in_db(project, publish=False)
    with transaction() as session:
        queues.set_paused(session, project.environment_ids["dev"], "test-echo", "task", True)
    held = run_row(triggers.in_db(project, publish=False))
    assert (held.status, held.admission) == ("QUEUED", "paused")


def test_a_default_ttl_changed_since_the_last_trigger_is_the_one_the_next_gets(
    project: ProjectKeys,
) -> None:
    env_id = project.environment_ids["dev"]
    triggers.in_db(project, publish=False)
    with transaction() as session:
        session.execute(
            update(Environment).where(Environment.id == env_id).values(default_ttl_seconds=77)
        )
    assert run_row(triggers.in_db(project, publish=False)).ttl_seconds == 77


def test_a_key_taken_is_still_a_duplicate_when_the_context_is_read_in_the_insert(
    project: ProjectKeys,
) -> None:
    """The INSERT that reads the context inserts nothing for a taken key either; the
    context is then read and the plain INSERT refuses the key, as it always did."""
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    with transaction() as session:
        taken = trigger_run(session, auth, "test-echo", 1, TriggerOptions(idempotencyKey="k-1"))
    spec = NewRun(task_identifier="test-echo", payload=1, payload_type="application/json",
                  options=RunOptions(), idempotency_key_hash=taken.run.idempotency_key_hash)
    with transaction() as session, pytest.raises(DuplicateRun), \
            sent_statements(this_thread=True) as sent:
        create_run(session, auth.project_id, auth.environment_id, spec)
    assert [s.lstrip()[:11] for s in sent] == ["INSERT INTO", "SELECT now(", "INSERT INTO"]
