"""Which TTL applies (trigger > task > environment, clamped; ``0`` = none) and when its
clock starts: at the first enqueue — at once, at promotion, or when a version registers."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from reprise.registry import REGISTRY
from reprise_server.shared.db import db_now, discard_after_commit, transaction
from reprise_server.shared.ids import new_run_id
from reprise_server.shared.runs import lifecycle
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus
from reprise_server.shared.settings import get_settings
from reprise_server.shared.timers.service import promote_due_runs
from reprise_server.shared.versions import repository as versions_repo
from reprise_server.workers.runtime import register_version
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row
from tests.support.timers import backdate


@pytest.mark.parametrize(
    ("env", "options", "expected"),
    [
        ("dev", {}, 600),  # the dev environment's default, 10m
        ("prod", {}, None),  # no default outside dev
        ("dev", {"ttl": "1h30m"}, 5400),
        ("prod", {"ttl": 90}, 90),
        ("dev", {"ttl": 0}, None),  # 0 means none, even over the environment's default
        ("dev", {"ttl": "0"}, None),
        ("dev", {"ttl": "30d"}, 14 * 86400),  # clamped to max_ttl_seconds
    ],
)
def test_the_trigger_ttl_else_the_environment_default_applies(
    project: ProjectKeys, env: str, options: dict[str, object], expected: int | None
) -> None:
    run = run_row(triggers.in_db(project, env=env, publish=False, **options))
    assert run.ttl_seconds == expected
    if expected is None:
        assert run.ttl_expires_at is None
    else:
        assert run.ttl_expires_at == run.queued_at + timedelta(seconds=expected)


def test_the_task_default_ttl_sits_between_the_trigger_and_the_environment(
    project: ProjectKeys,
) -> None:
    def ttl_of(**options: object) -> int | None:
        run_id = triggers.in_db(project, "test-ttl-default", publish=False, **options)
        return run_row(run_id).ttl_seconds

    assert ttl_of() == 3600
    assert ttl_of(ttl="5m") == 300
    assert ttl_of(ttl=0) is None


def test_a_delayed_run_starts_its_ttl_clock_when_promoted(project: ProjectKeys) -> None:
    run_id = triggers.in_db(project, delay="1h", ttl="10m", publish=False)
    run = run_row(run_id)
    assert (run.status, run.ttl_seconds, run.ttl_expires_at, run.queued_at) == (
        "DELAYED", 600, None, None,
    )
    backdate(run_id, "delayed_until", seconds=3600)  # due an hour ago
    with transaction() as session:
        assert promote_due_runs(session).promoted == 1
        discard_after_commit(session)
    run = run_row(run_id)
    # Ten minutes from the promotion, not from the trigger or the due time.
    assert run.ttl_expires_at == run.queued_at + timedelta(minutes=10)
    assert run.ttl_expires_at > run.delayed_until + timedelta(minutes=10)


def test_a_run_waiting_for_a_version_starts_its_ttl_clock_when_one_registers(
    project: ProjectKeys,
) -> None:
    dev = project.environment_ids["dev"]
    with transaction() as session:  # a newer version in dev that lacks test-echo
        versions_repo.upsert_worker_version(session, dev, "20261122.0-partial", [])
    run_id = triggers.in_db(project, ttl="10m", publish=False)
    run = run_row(run_id)
    assert (run.status, run.ttl_expires_at, run.queued_at) == ("PENDING_VERSION", None, None)
    assert register_version(REGISTRY, get_settings().worker_version, ["dev"], project.project_id) >= 1
    run = run_row(run_id)
    assert run.queued_at is not None
    assert run.ttl_expires_at == run.queued_at + timedelta(minutes=10)


def test_a_run_inserted_queued_starts_its_ttl_clock_on_the_database_clock(
    project: ProjectKeys,
) -> None:
    """Promotion and release start the TTL clock with the database's ``now()``; the insert
    of a QUEUED run does too, whatever clock its caller stamped ``created_at`` with (here
    the process's, read after the transaction began)."""
    with transaction() as session:
        database_clock = db_now(session)  # now(): the transaction's start
        time.sleep(0.05)
        callers_clock = datetime.now(UTC)
        run = Run(
            id=new_run_id(), project_id=project.project_id,
            environment_id=project.environment_ids["dev"], task_identifier="test-echo",
            status=RunStatus.QUEUED, payload=None, payload_type="application/json",
            max_attempts=3, ttl_seconds=600, created_at=callers_clock, updated_at=callers_clock,
        )
        lifecycle.insert(session, run)
        discard_after_commit(session)
    stored = run_row(run.id)
    assert stored.queued_at == stored.dispatched_at == database_clock
    assert stored.ttl_expires_at == database_clock + timedelta(seconds=600)
    assert (run.queued_at, run.ttl_expires_at) == (stored.queued_at, stored.ttl_expires_at)
