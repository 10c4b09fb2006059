"""Admission against real Postgres: a run over its limit is held back unpublished, and the
transaction that ends a run holding a slot admits the next run in line (by rank), with the
limit's and key's counters equal to the slots held. Runs are triggered and finished in this
process the way the api and a worker do; publishing is recorded, not sent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from reprise_server.shared import broker
from reprise_server.shared.db import transaction
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import attempts
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import trigger_run
from reprise_server.workers.runtime import load_task_modules, register_version
from tests.support.fixtures import ProjectKeys

VERSION = "flow-test.1"
WORKER = "flow-test@host"
TASKS = ["flow-one-at-a-time", "flow-one-per-key"]


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(broker, "dispatch_runs",
                        lambda runs, *a, **k: sent.extend(r[0] for r in runs))
    monkeypatch.setattr(broker, "dispatch_run", lambda run_id, *a, **k: sent.append(run_id))
    return sent


@pytest.fixture
def auth(project: ProjectKeys) -> AuthContext:
    register_version(load_task_modules("tests.shared.flow.limited_tasks"), VERSION, ["dev"],
                     project.project_id)
    return AuthContext(project.project_id, project.environment_ids["dev"], "dev")


def trigger(auth: AuthContext, task_id: str, **options: Any) -> str:
    with transaction() as session:
        return trigger_run(session, auth, task_id, None,
                           TriggerOptions.model_validate(options)).run.id


def finish(run_id: str) -> None:
    with transaction() as session:
        begun = attempts.claim_and_begin(session, run_id, WORKER, VERSION, TASKS)
    assert begun is not None
    run, attempt = begun
    with transaction() as session:
        attempts.finish_attempt(session, run, WORKER, attempt.number, 1,
                                attempts.Succeeded(None))


def held_back(run_ids: list[str]) -> dict[str, str | None]:
    with transaction() as session:
        rows = session.execute(text("SELECT id, admission FROM runs WHERE id = ANY(:ids)"),
                               {"ids": run_ids})
        return {run_id: admission for run_id, admission in rows}


def counters_match_slots() -> None:
    with transaction() as session:
        limits = session.execute(text(
            "SELECT l.running, (SELECT count(*) FROM concurrency_slots s WHERE s.limit_id = l.id)"
            " FROM concurrency_limits l")).all()
        keys = session.execute(text(
            "SELECT k.running, (SELECT count(*) FROM concurrency_slots s"
            "   WHERE s.limit_id = k.limit_id AND s.key = k.key),"
            " k.waiting, (SELECT count(*) FROM admission_line a"
            "   WHERE a.limit_id = k.limit_id AND a.key = k.key)"
            " FROM concurrency_keys k")).all()
    assert all(running == slots for running, slots in limits), limits
    assert all(r == s and w == line for r, s, w, line in keys), keys


def test_a_run_over_the_total_waits_and_the_end_of_the_running_one_admits_the_next(
    auth: AuthContext, published: list[str]
) -> None:
    first = trigger(auth, "flow-one-at-a-time")
    second = trigger(auth, "flow-one-at-a-time")
    urgent = trigger(auth, "flow-one-at-a-time", priority=3600)  # ranked before `second`
    assert published == [first]
    assert held_back([first, second, urgent]) == {
        first: None, second: "waiting", urgent: "waiting"
    }
    counters_match_slots()

    finish(first)
    assert published == [first, urgent]
    assert held_back([second, urgent]) == {second: "waiting", urgent: None}
    counters_match_slots()

    finish(urgent)
    finish(second)
    assert published == [first, urgent, second]
    counters_match_slots()


def test_per_key_bounds_each_key_apart(auth: AuthContext, published: list[str]) -> None:
    a1 = trigger(auth, "flow-one-per-key", concurrencyKey="a")
    a2 = trigger(auth, "flow-one-per-key", concurrencyKey="a")
    b1 = trigger(auth, "flow-one-per-key", concurrencyKey="b")
    assert published == [a1, b1]
    finish(a1)
    assert published == [a1, b1, a2]
    counters_match_slots()
