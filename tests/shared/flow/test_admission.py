"""Admission against real Postgres: a run over its limit is held back unpublished, and the
transaction that ends a run holding a slot admits the next run in line (by rank), with the
limit's and key's counters equal to the slots held. Runs are triggered and finished in this
process the way the api and a worker do; publishing is recorded, not sent."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from reprise_server.shared import broker
from reprise_server.shared.db import transaction
from reprise_server.shared.flow import admission
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs import attempts, lifecycle
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import trigger_run
from reprise_server.workers.runtime import load_task_modules, register_version
from tests.support.fixtures import ProjectKeys

VERSION = "flow-test.1"
WORKER = "flow-test@host"
TASKS = ["flow-one-at-a-time", "flow-one-per-key", "flow-own-and-shared", "flow-shared-only",
         "flow-two-per-key"]


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


def counters_match_slots(auth: AuthContext) -> None:
    """Every counter equals the rows it counts, and no bound is exceeded (one snapshot per
    statement: safe to call while other transactions settle). Limits of earlier tests'
    projects keep counters of runs the fixture truncated: only this environment's count."""
    ours = {"env": auth.environment_id}
    with transaction() as session:
        limits = session.execute(text(
            "SELECT l.running, (SELECT count(*) FROM concurrency_slots s WHERE s.limit_id = l.id)"
            " FROM concurrency_limits l WHERE l.environment_id = :env"), ours).all()
        keys = session.execute(text(
            "SELECT k.running, (SELECT count(*) FROM concurrency_slots s"
            "   WHERE s.limit_id = k.limit_id AND s.key = k.key),"
            " k.waiting, (SELECT count(*) FROM admission_line a"
            "   WHERE a.limit_id = k.limit_id AND a.key = k.key)"
            " FROM concurrency_keys k JOIN concurrency_limits l ON l.id = k.limit_id"
            " WHERE l.environment_id = :env"), ours).all()
        over = session.execute(text(
            "SELECT l.name FROM concurrency_limits l WHERE"
            " coalesce(l.total_override, l.total_base) < (SELECT count(*)"
            "   FROM concurrency_slots s WHERE s.limit_id = l.id)"
            " UNION ALL SELECT k.key FROM concurrency_keys k WHERE k.cap < (SELECT count(*)"
            "   FROM concurrency_slots s WHERE s.limit_id = k.limit_id AND s.key = k.key)"
        )).all()  # slots are truncated between tests: every row counts here
        unheld = session.execute(text(
            "SELECT r.id FROM runs r WHERE r.status IN ('QUEUED', 'DEQUEUED', 'EXECUTING')"
            " AND r.admission IS NULL AND cardinality(r.concurrency_limits) <>"
            " (SELECT count(*) FROM concurrency_slots s WHERE s.run_id = r.id)"
        )).all()
    assert all(running == slots for running, slots in limits), limits
    assert all(r == s and w == line for r, s, w, line in keys), keys
    assert not over, over
    assert not unheld, unheld


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
    counters_match_slots(auth)

    finish(first)
    assert published == [first, urgent]
    assert held_back([second, urgent]) == {second: "waiting", urgent: None}
    counters_match_slots(auth)

    finish(urgent)
    finish(second)
    assert published == [first, urgent, second]
    counters_match_slots(auth)


def test_per_key_bounds_each_key_apart(auth: AuthContext, published: list[str]) -> None:
    a1 = trigger(auth, "flow-one-per-key", concurrencyKey="a")
    a2 = trigger(auth, "flow-one-per-key", concurrencyKey="a")
    b1 = trigger(auth, "flow-one-per-key", concurrencyKey="b")
    assert published == [a1, b1]
    finish(a1)
    assert published == [a1, b1, a2]
    counters_match_slots(auth)


def test_concurrent_workers_never_exceed_a_bound_and_every_run_finishes(
    auth: AuthContext, published: list[str]
) -> None:
    """Four threads claim, finish and cancel runs of a task with its own and a named limit,
    one with the named limit alone and one with a per-key bound, at random: after every
    step the counters equal the slots and line, no bound is exceeded, and at the end every
    run finished (the sweep admits what a settlement passed over)."""
    rng = random.Random(7)
    for _ in range(4):
        with transaction() as session:
            for _ in range(30):
                options: dict[str, Any] = {}
                if rng.random() < 0.8:
                    options["concurrencyKey"] = f"k{rng.randrange(4)}"
                if rng.random() < 0.3:
                    options["priority"] = rng.randrange(100)
                trigger_run(session, auth, rng.choice(TASKS[2:]), None,
                            TriggerOptions.model_validate(options))
    counters_match_slots(auth)
    pick = threading.Lock()
    errors: list[BaseException] = []

    def one(sql: str) -> list[str]:
        with pick, transaction() as session:
            return list(session.execute(text(sql)).scalars())

    def work(seed: int) -> None:
        local = random.Random(seed)
        try:
            while True:
                if local.random() < 0.15:
                    # A waiting run, locked so that no settlement admits it meanwhile (a
                    # cancel racing a run's own finish is not what this test is about).
                    with transaction() as session:
                        for run_id in session.execute(text(
                            "SELECT id FROM runs WHERE admission = 'waiting'"
                            " AND status = 'QUEUED' ORDER BY random() LIMIT 1"
                            " FOR UPDATE SKIP LOCKED"
                        )).scalars():
                            lifecycle.cancel(session, run_id)
                admitted = one("SELECT id FROM runs WHERE status = 'QUEUED'"
                               " AND admission IS NULL ORDER BY random() LIMIT 1")
                if admitted:
                    with transaction() as session:
                        begun = attempts.claim_and_begin(session, admitted[0], WORKER,
                                                         VERSION, TASKS)
                    if begun is not None:
                        run, attempt = begun
                        with transaction() as session:
                            attempts.finish_attempt(session, run, WORKER, attempt.number, 1,
                                                    attempts.Succeeded(None))
                    continue
                if not one("SELECT id FROM runs WHERE status IN ('QUEUED', 'RETRYING')"
                           " AND admission IS NOT NULL LIMIT 1"):
                    return
                with transaction() as session:
                    admission.sweep(session)
                time.sleep(0.01)
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        counters_match_slots(auth)
        time.sleep(0.05)
    for thread in threads:
        thread.join(5)
    assert not errors, errors
    counters_match_slots(auth)
    with transaction() as session:
        left = session.execute(text(
            "SELECT count(*) FROM runs WHERE status NOT IN ('COMPLETED', 'CANCELED')"
        )).scalar()
    assert left == 0
