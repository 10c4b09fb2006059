"""A worker version arrives: every run waiting for a version that has its task is
released (in batches, each committed and published on its own), however many wait; and
registering it in many environments at once is a few statements for them all, each
environment getting what the catalogue declares, with boots running at once never
waiting for each other in a cycle."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.orm import Session

from reprise.registry import REGISTRY, Registry, TaskDefinition
from reprise_server.shared import broker
from reprise_server.shared.db import session_factory, transaction
from reprise_server.shared.flow import admission
from reprise_server.shared.projects.models import Project
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import trigger_run
from reprise_server.shared.settings import get_settings
from reprise_server.shared.versions import service as versions
from reprise_server.workers.runtime import register_version
from tests.support.fixtures import ProjectKeys
from tests.support.statements import sent_statements

WAITING = 2_500


@pytest.fixture
def unserved_queue() -> Iterator[str]:
    """A Reprise queue no worker serves: the messages published for its runs stay in Redis
    to be counted (and are deleted afterwards)."""
    name = f"release-{secrets.token_hex(4)}"
    yield name
    app = broker.celery_app()
    celery_queue = broker.run_queue(get_settings(), name)
    client = broker.broker_client(app.conf.broker_url)
    client.delete(*client.keys(f"{celery_queue}*") or [celery_queue])


def _wait_for_a_version(project: ProjectKeys, queue: str, count: int) -> None:
    """Make dev's current version one without test-echo, then trigger ``count`` runs of
    test-echo there: each waits in PENDING_VERSION."""
    lacking = Registry({"hello-world": TaskDefinition(id="hello-world", fn=lambda p, c: p)})
    register_version(lacking, "20261122.0-lacking", ["dev"], project.project_id)
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    options = TriggerOptions.model_validate({"queue": queue})
    with transaction() as session:
        for _ in range(count):
            trigger_run(session, auth, "test-echo", {"n": 1}, options)


def _statuses(project: ProjectKeys) -> dict[str, int]:
    with transaction() as session:
        rows = session.execute(
            select(Run.status, func.count())
            .where(Run.environment_id == project.environment_ids["dev"])
            .group_by(Run.status)
        )
        return {status.value: count for status, count in rows}


def _published(queue: str) -> int:
    app = broker.celery_app()
    celery_queue = broker.run_queue(get_settings(), queue)
    return broker.queue_lengths(broker.broker_client(app.conf.broker_url), [celery_queue])[
        celery_queue
    ]


@pytest.mark.slow
def test_a_registration_releases_every_waiting_run_not_only_the_first_thousand(
    project: ProjectKeys, unserved_queue: str
) -> None:
    _wait_for_a_version(project, unserved_queue, WAITING)
    assert _statuses(project) == {"PENDING_VERSION": WAITING}

    released = register_version(REGISTRY, "20261122.9", ["dev"], project.project_id)

    assert released == WAITING
    assert _statuses(project) == {"QUEUED": WAITING}
    assert _published(unserved_queue) == WAITING


def test_runs_left_waiting_by_an_interrupted_registration_are_released_by_the_next(
    project: ProjectKeys, unserved_queue: str
) -> None:
    """A registration that stops after its first batch (its process died) leaves the rest
    waiting, each batch it did commit already published: the next registration of a
    version with the task (a worker process booting) releases the rest."""
    _wait_for_a_version(project, unserved_queue, 250)
    with transaction() as session:
        (dev,) = versions.register_worker_version(
            session, "20261122.9", REGISTRY.catalogue(), ["dev"], project.project_id
        )
    with transaction() as session:
        first = versions.release_waiting_runs(session, dev, list(REGISTRY.catalogue()), 100)
    assert len(first) == 100
    assert _statuses(project) == {"QUEUED": 100, "PENDING_VERSION": 150}
    assert _published(unserved_queue) == 100

    assert register_version(REGISTRY, "20261122.9", ["dev"], project.project_id) == 150
    assert _statuses(project) == {"QUEUED": 250}
    assert _published(unserved_queue) == 250


def test_the_release_sweep_queues_a_run_a_registration_missed_and_only_such_runs(
    project: ProjectKeys, unserved_queue: str
) -> None:
    """A trigger that read the old current version and committed its PENDING_VERSION run
    after the registration's release had looked leaves the run waiting although the
    current version has its task. Forced here: the version with the task is registered
    (its release finds nothing), then a run waits as that trigger would have left it."""
    from reprise_server.shared.runs import cas
    from reprise_server.shared.runs.states import RunStatus
    from reprise_server.workers.sweeps import release_waiting_runs

    _wait_for_a_version(project, unserved_queue, 2)
    with transaction() as session:
        versions.register_worker_version(
            session, "20261122.9", REGISTRY.catalogue(), ["dev"], project.project_id
        )
    lacking = Registry({"hello-world": TaskDefinition(id="hello-world", fn=lambda p, c: p)})
    with transaction() as session:
        ids = [run_id for (run_id,) in session.execute(select(Run.id).where(
            Run.environment_id == project.environment_ids["dev"]))]
    assert _statuses(project) == {"PENDING_VERSION": 2}

    assert release_waiting_runs() == {"released": 2}
    assert _statuses(project) == {"QUEUED": 2}
    assert _published(unserved_queue) == 2

    # A run whose task the current version lacks keeps waiting.
    register_version(lacking, "20261122.10-lacking", ["dev"], project.project_id)
    with transaction() as session:
        cas.transition(session, ids[0], RunStatus.PENDING_VERSION, sources={RunStatus.QUEUED})
    assert release_waiting_runs() == {"released": 0}
    assert _statuses(project) == {"QUEUED": 1, "PENDING_VERSION": 1}


def test_a_queue_declared_in_code_follows_the_trigger_rule_and_nothing_is_registered(
    project: ProjectKeys,
) -> None:
    from reprise_server.shared.errors import InvalidInput
    from reprise_server.shared.projects.catalogue import current_version_with_task

    bad = Registry({"sneaky": TaskDefinition(id="sneaky", fn=lambda p, c: p, queue="../x")})
    with pytest.raises(InvalidInput, match="task 'sneaky': a queue name is"):
        register_version(bad, "20261122.11-bad", ["dev"], project.project_id)
    with transaction() as session:
        assert current_version_with_task(session, project.environment_ids["dev"], "sneaky") is None


def _registration(project: ProjectKeys, version: str) -> tuple[object, list[tuple[str, dict]]]:
    from reprise_server.shared.projects.models import VersionTask, WorkerVersion

    with transaction() as session:
        row = session.execute(select(WorkerVersion).where(
            WorkerVersion.environment_id == project.environment_ids["dev"],
            WorkerVersion.version == version,
        )).scalar_one()
        tasks = session.execute(
            select(VersionTask.task_identifier, VersionTask.options,
                   literal_column("version_tasks.ctid::text"))
            .where(VersionTask.worker_version_id == row.id)
            .order_by(VersionTask.task_identifier)
        ).all()
        return row.registered_at, [tuple(t) for t in tasks]


def test_a_boot_with_the_current_version_and_catalogue_rewrites_nothing_but_says_it_registered(
    project: ProjectKeys,
) -> None:
    """Every worker process registers in every environment when it boots: with the
    environment's current version and the same catalogue, its catalogue rows are not
    rewritten (the physical row ids stay), only the registration time moves. The same
    version with a different catalogue is registered again in full."""
    one = Registry({"hello-world": TaskDefinition(id="hello-world", fn=lambda p, c: p)})
    register_version(one, "20261206.1-same", ["dev"], project.project_id)
    first_at, first_rows = _registration(project, "20261206.1-same")

    register_version(one, "20261206.1-same", ["dev"], project.project_id)
    again_at, again_rows = _registration(project, "20261206.1-same")
    assert again_rows == first_rows
    assert again_at > first_at

    two = Registry({
        "hello-world": TaskDefinition(id="hello-world", fn=lambda p, c: p, max_attempts=7),
    })
    register_version(two, "20261206.1-same", ["dev"], project.project_id)
    _, changed_rows = _registration(project, "20261206.1-same")
    assert [(task, options["max_attempts"]) for task, options, _ in changed_rows] == [
        ("hello-world", 7)
    ]
    assert changed_rows[0][2] != first_rows[0][2]


# --- concurrency limits: a version's declaration sets the bounds ---------------------------


def _limited(total: int, shared_total: int | None = None) -> Registry:
    """A catalogue with ``reg-limited`` holding its own limit (``total``) and, when given,
    the named limit ``reg-shared``."""
    limits = [{"name": "task/reg-limited", "total": total, "per_key": None}]
    if shared_total is not None:
        limits.append({"name": "reg-shared", "total": shared_total, "per_key": None})
    return Registry({"reg-limited": TaskDefinition(
        id="reg-limited", fn=lambda p, c: p, concurrency=limits)})


def _trigger_limited(project: ProjectKeys, queue: str, count: int) -> list[str]:
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    options = TriggerOptions.model_validate({"queue": queue})
    ids = []
    for n in range(count):  # one transaction each: ranked in this order
        with transaction() as session:
            ids.append(trigger_run(session, auth, "reg-limited", {"n": n}, options).run.id)
    return ids


def _bounds(project: ProjectKeys, name: str) -> tuple[Any, ...]:
    from reprise_server.shared.flow import limits

    with transaction() as session:
        item = limits.retrieve(session, project.environment_ids["dev"], name)
    return item["total"]["current"], item["total"]["base"], item["total"]["override"]


def test_a_version_declaring_a_wider_bound_admits_waiting_runs_as_it_registers(
    project: ProjectKeys, unserved_queue: str
) -> None:
    from tests.support import flow

    register_version(_limited(1, shared_total=1), "20261206.2-narrow", ["dev"],
                     project.project_id)
    own = flow.limit_id(project, "task/reg-limited")
    shared = flow.limit_id(project, "reg-shared")
    ids = _trigger_limited(project, unserved_queue, 5)
    assert flow.admitted(ids) == [ids[0]]
    assert _published(unserved_queue) == 1
    # Its own limit widened to 3, the named one to 2: the tighter bound (2) admits one
    # more, in the registration's transaction, and publishes it.
    register_version(_limited(3, shared_total=2), "20261206.2-wider", ["dev"],
                     project.project_id)
    assert flow.admitted(ids) == sorted(ids[:2])
    assert _published(unserved_queue) == 2
    register_version(_limited(3, shared_total=10), "20261206.2-widest", ["dev"],
                     project.project_id)
    assert flow.admitted(ids) == sorted(ids[:3])
    assert _published(unserved_queue) == 3
    flow.assert_consistent(own, shared)


def test_an_override_survives_every_re_registration_and_a_reset_returns_to_the_latest(
    project: ProjectKeys, unserved_queue: str
) -> None:
    """A new version, and an old worker booting again mid-deploy (the latest registration
    sets the bounds), both leave an operator's override in force."""
    from reprise_server.shared.flow import limits
    from tests.support import flow

    env = project.environment_ids["dev"]
    register_version(_limited(1), "20261206.3-old", ["dev"], project.project_id)
    with transaction() as session:
        limits.override(session, env, "task/reg-limited", total=4)
    ids = _trigger_limited(project, unserved_queue, 6)
    assert flow.admitted(ids) == sorted(ids[:4])
    register_version(_limited(2), "20261206.3-new", ["dev"], project.project_id)
    assert _bounds(project, "task/reg-limited") == (4, 2, 4)
    register_version(_limited(1), "20261206.3-old", ["dev"], project.project_id)
    assert _bounds(project, "task/reg-limited") == (4, 1, 4)  # base back to the old one's
    register_version(_limited(2), "20261206.3-new", ["dev"], project.project_id)
    assert _bounds(project, "task/reg-limited") == (4, 2, 4)
    assert flow.admitted(ids) == sorted(ids[:4])  # nothing taken back, nothing more
    with transaction() as session:
        limits.reset(session, env, "task/reg-limited")
    assert _bounds(project, "task/reg-limited") == (2, 2, None)
    flow.assert_consistent(flow.limit_id(project, "task/reg-limited"))


# --- many environments: a few statements for all, whatever their number --------------------


@contextmanager
def _rolled_back() -> Iterator[Session]:
    """A session whose work is rolled back: registering in every environment of the suite's
    database leaves nothing behind for the tests after."""
    session = session_factory()()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def _new_projects(session: Session, count: int) -> list[str]:
    from reprise_server.shared.projects.service import ensure_project

    prefix = f"many-{secrets.token_hex(3)}"
    return [ensure_project(session, f"{prefix}-{n}").id for n in range(count)]


def _catalogue(tag: str, *, hourly: bool = True) -> dict[str, dict[str, Any]]:
    """Four tasks: one holding its own limit and a named one (in a queue of its own), one
    ticking in every environment, one in prod only, one plain."""
    return {
        f"{tag}-limited": {
            "queue": f"{tag}-emails",
            "concurrency": [{"name": f"task/{tag}-limited", "total": 2, "per_key": 1},
                            {"name": f"{tag}-shared", "total": 5, "per_key": None}],
        },
        f"{tag}-cron": {"cron": "0 * * * *" if hourly else "30 2 * * *",
                        "timezone": "Europe/Paris"},
        f"{tag}-prod-cron": {"cron": "15 * * * *", "cron_environments": ["prod"]},
        f"{tag}-plain": {"max_attempts": 2},
    }


def _register_everywhere(session: Session, version: str, catalogue: dict[str, Any]) -> int:
    """Register in every environment of the database (then settle the limits as the commit
    would); returns the statements it took."""
    with sent_statements() as sent:
        versions.register_worker_version(session, version, catalogue, ["dev", "staging", "prod"])
        admission.settle(session)
    return len(sent)


def test_registering_a_new_catalogue_takes_as_many_statements_for_600_environments_as_for_60(
) -> None:
    """Every worker process registers in every environment it serves when it boots: a
    version (or catalogue) new everywhere costs a few statements per table for all of them,
    not a few per environment (thousands of projects made a first boot take minutes)."""
    counts = {}
    for projects in (20, 200):
        tag = f"bulk-{secrets.token_hex(3)}"
        with _rolled_back() as session:
            _new_projects(session, projects)
            counts[projects] = _register_everywhere(session, f"v-{tag}", _catalogue(tag))
    assert counts[20] == counts[200]
    assert counts[200] <= 15


def test_a_registration_in_many_environments_writes_each_what_it_declares() -> None:
    """Across several projects at once: every environment gets the version's tasks, its
    limits (an override kept, a bound already declared left as it is), its queues and its
    declarative schedules (created, updated and active again, or deactivated; ``prod`` only
    where the catalogue says so)."""
    from reprise_server.shared.flow import limits
    from reprise_server.shared.flow.models import ConcurrencyLimit, Queue
    from reprise_server.shared.projects.models import Environment, VersionTask, WorkerVersion
    from reprise_server.shared.schedules import repository as schedules_repo

    tag = f"each-{secrets.token_hex(3)}"
    with _rolled_back() as session:
        project_ids = _new_projects(session, 4)
        envs = {
            (env.project_id, env.slug): env.id
            for env in session.scalars(select(Environment).where(
                Environment.project_id.in_(project_ids)))
        }
        first = project_ids[0]
        # What a first version left in the first project: its own task's limit declared
        # narrower (and overridden in dev), a schedule daily instead of hourly, and one for a
        # task the next version drops.
        old = {**_catalogue(tag, hourly=False), f"{tag}-dropped": {"cron": "0 0 * * *"}}
        old[f"{tag}-limited"]["concurrency"][0]["total"] = 1
        versions.register_worker_version(session, "v1", old, ["dev", "staging", "prod"],
                                         first)
        limits.override(session, envs[(first, "dev")], f"task/{tag}-limited", total=9)
        kept = session.execute(
            select(ConcurrencyLimit.name, literal_column("concurrency_limits.ctid::text"))
            .where(ConcurrencyLimit.environment_id == envs[(first, "dev")])
        ).all()
        before = {
            (s.environment_id, s.task_identifier): (s.id, s.active)
            for s in schedules_repo.declarative_in(session, list(envs.values()))
        }
        registered = versions.register_worker_version(
            session, "v2", _catalogue(tag), ["dev", "staging", "prod"]
        )
        admission.settle(session)

        assert set(envs.values()) <= set(registered)
        catalogue = _catalogue(tag)
        now = session.scalar(select(func.now()))
        digests = set()
        for (project_id, slug), env in envs.items():
            version = session.execute(select(WorkerVersion).where(
                WorkerVersion.environment_id == env, WorkerVersion.version == "v2"
            )).scalar_one()
            assert version.registered_at == now
            digests.add(version.catalogue_digest)
            tasks = dict(session.execute(
                select(VersionTask.task_identifier, VersionTask.options)
                .where(VersionTask.worker_version_id == version.id)
            ).all())
            assert sorted(tasks) == sorted(catalogue)
            assert tasks[f"{tag}-limited"]["concurrency_limits"] == [
                f"task/{tag}-limited", f"{tag}-shared"]
            assert session.execute(select(VersionTask.environment_id).where(
                VersionTask.worker_version_id == version.id).distinct()).scalars().all() == [env]

            bounds = {
                row.name: (row.total_base, row.per_key_base, row.total_override)
                for row in session.scalars(select(ConcurrencyLimit).where(
                    ConcurrencyLimit.environment_id == env))
            }
            override = 9 if (project_id, slug) == (first, "dev") else None
            assert bounds == {f"task/{tag}-limited": (2, 1, override),
                              f"{tag}-shared": (5, None, None)}

            queues = dict(session.execute(select(Queue.name, Queue.type).where(
                Queue.environment_id == env)).all())
            known = {f"task/{tag}-dropped": "task"} if project_id == first else {}  # kept
            assert queues == {f"task/{t}": "task" for t in catalogue} | known | {
                f"{tag}-emails": "custom"}

            schedules = {
                s.task_identifier: s
                for s in schedules_repo.declarative_in(session, [env])
            }
            expected = {f"{tag}-cron"} | ({f"{tag}-prod-cron"} if slug == "prod" else set())
            assert {t for t, s in schedules.items() if s.active} == expected
            hourly = schedules[f"{tag}-cron"]
            assert (hourly.cron, hourly.timezone) == ("0 * * * *", "Europe/Paris")
            assert hourly.next_tick_at is not None
            assert hourly.next_tick_at.minute == 0
            if project_id == first:  # the same schedules, updated or deactivated
                assert before[(env, f"{tag}-cron")][0] == hourly.id
                dropped = schedules[f"{tag}-dropped"]
                assert before[(env, f"{tag}-dropped")] == (dropped.id, True)
                assert (dropped.active, dropped.next_tick_at) == (False, None)
            else:
                assert f"{tag}-dropped" not in schedules
        assert len(digests) == 1
        assert None not in digests
        # The named limit was declared alike before: its row was not rewritten.
        after = dict(session.execute(
            select(ConcurrencyLimit.name, literal_column("concurrency_limits.ctid::text"))
            .where(ConcurrencyLimit.environment_id == envs[(first, "dev")])
        ).all())
        assert after[f"{tag}-shared"] == dict(kept)[f"{tag}-shared"]
        assert after[f"task/{tag}-limited"] != dict(kept)[f"task/{tag}-limited"]


def test_boots_registering_in_many_environments_at_once_wait_for_each_other_in_one_order(
) -> None:
    """Several worker processes boot at once (a deploy under way): one whose catalogue is
    already registered (it only marks the registrations as made again) and others with
    catalogues new everywhere. None waits for another in a cycle: they lock the same rows
    in one order."""
    tags = [f"race-{secrets.token_hex(3)}" for _ in range(4)]
    with transaction() as session:
        # The first boot's catalogue is registered in half of the environments (their ids
        # random: the two halves interleave in id order), and in none of the others.
        project_ids = _new_projects(session, 60)
        for project_id in project_ids[:30]:
            versions.register_worker_version(
                session, "v-race", _catalogue(tags[0]), ["dev", "staging", "prod"], project_id
            )
    try:
        barrier = threading.Barrier(len(tags))
        failures: list[BaseException] = []

        def boot(tag: str) -> None:
            try:
                with _rolled_back() as session:
                    barrier.wait()
                    versions.register_worker_version(
                        session, "v-race", _catalogue(tag), ["dev", "staging", "prod"]
                    )
                    admission.settle(session)
                    time.sleep(0.2)  # its locks held while the others run into them
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=boot, args=(tag,)) for tag in tags]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
    finally:
        with transaction() as session:
            session.execute(delete(Project).where(Project.id.in_(project_ids)))
