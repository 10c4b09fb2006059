"""A worker version arrives: every run waiting for a version that has its task is
released (in batches, each committed and published on its own), however many wait."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, literal_column, select

from reprise.registry import REGISTRY, Registry, TaskDefinition
from reprise_server.shared import broker
from reprise_server.shared.db import transaction
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.schemas import TriggerOptions
from reprise_server.shared.runs.service import trigger_run
from reprise_server.shared.settings import get_settings
from reprise_server.shared.versions import service as versions
from reprise_server.workers.runtime import register_version
from tests.support.fixtures import ProjectKeys

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
