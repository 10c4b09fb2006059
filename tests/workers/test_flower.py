"""Flower for operators: the real ``reprise flower`` process against this session's Redis,
watching the in-process worker."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reprise_server.shared.broker import celery_app
from reprise_server.shared.settings import Settings
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status
from tests.support.processes import free_port, reprise_process

CREDENTIALS = ("ops", "s3cret-pass")


@pytest.fixture(scope="module")
def flower(celery_worker: Any) -> Iterator[str]:
    """Flower in production mode (basic auth required), once its event receiver is live."""
    port = free_port()
    env = {
        "REPRISE_MODE": "production",
        "REPRISE_SECRET_KEY": "test-secret-key",
        "REPRISE_FLOWER_BASIC_AUTH": ":".join(CREDENTIALS),
        "REPRISE_LOG_FORMAT": "json",
    }
    with reprise_process("flower", "--address", "127.0.0.1", "--port", str(port), env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        hostname = celery_worker.hostname

        def events_flowing() -> bool:
            # Ask the workers for a heartbeat event (what Flower's receiver does once when it
            # starts listening) until Flower's own metrics show it received one: from then
            # on, task events reach Flower too.
            assert proc.alive(), proc.log()
            celery_app().control.heartbeat()
            try:
                text = httpx.get(f"{base}/metrics", timeout=2).text
            except httpx.HTTPError:
                return False
            return f'flower_worker_online{{worker="{hostname}"}} 1.0' in text

        wait_for(events_flowing, timeout=60, interval=0.25, what=f"Flower to see {hostname}")
        yield base


@pytest.mark.slow
def test_flower_requires_basic_auth_in_production(flower: str) -> None:
    assert httpx.get(f"{flower}/api/workers", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/", timeout=5).status_code == 401
    wrong = httpx.get(f"{flower}/api/workers", auth=("ops", "nope"), timeout=5)
    assert wrong.status_code == 401
    assert httpx.get(f"{flower}/api/workers", auth=CREDENTIALS, timeout=10).status_code == 200
    # The page the Compose and Kubernetes probes use is the one left open.
    assert httpx.get(f"{flower}/healthcheck", timeout=5).text == "OK"


@pytest.mark.slow
def test_flower_shows_the_worker_and_runs_by_task_name_and_run_id(
    flower: str, celery_worker: Any, api: Any, project: ProjectKeys
) -> None:
    workers = httpx.get(f"{flower}/api/workers?refresh=1", auth=CREDENTIALS, timeout=10).json()
    assert celery_worker.hostname in workers
    assert "reprise.execute_run" in workers[celery_worker.hostname]["registered"]

    run_id = triggers.via_api(api, project, payload={"secret": "payload-marker"})
    wait_for_status(run_id, "COMPLETED")

    def flower_task() -> dict[str, Any] | None:
        tasks = httpx.get(
            f"{flower}/api/tasks",
            params={"taskname": "reprise.execute_run", "limit": 100},
            auth=CREDENTIALS,
            timeout=5,
        ).json()
        for task in tasks.values():
            if run_id in (task.get("args") or "") and task.get("state") == "SUCCESS":
                return dict(task)
        return None

    task = wait_for(flower_task, timeout=15, interval=0.1, what=f"{run_id} in Flower")
    assert task["name"] == "reprise.execute_run"
    assert task["worker"] == celery_worker.hostname
    assert re.fullmatch(rf"\[['\"]{run_id}['\"]\]", task["args"])


@pytest.mark.slow
def test_a_run_handed_to_the_worker_that_freed_its_slot_is_a_task_of_its_own_in_flower(
    flower: str, celery_worker: Any, project: ProjectKeys, tmp_path: Path
) -> None:
    """Under a limit of one, each run's end admits the next and the worker executes it
    without a message (hand-off); Flower still lists each run as a task on that worker."""
    from reprise_server.shared import metrics
    from tests.support import flow

    handed = metrics.HANDOFFS.labels(outcome="executed")
    before = handed._value.get()
    gate = tmp_path / "gate"
    # The first holds its slot until the others stand in line (a quick first run could
    # end before the next is triggered, which would then be admitted, and published, at
    # its own trigger).
    ids = flow.trigger(project, "flow-one", 1, payload={"hold": str(gate)})
    ids += flow.trigger(project, "flow-one", 2, payload={"seconds": 0})
    gate.touch()
    for run_id in ids:
        wait_for_status(run_id, "COMPLETED")
    assert handed._value.get() - before == 2

    def listed() -> dict[str, dict[str, Any]] | None:
        tasks = httpx.get(
            f"{flower}/api/tasks", params={"taskname": "reprise.execute_run", "limit": 1000},
            auth=CREDENTIALS, timeout=5,
        ).json()
        found = {run_id: task for task in tasks.values() for run_id in ids
                 if run_id in (task.get("args") or "") and task.get("state") == "SUCCESS"}
        return found if len(found) == len(ids) else None

    found = wait_for(listed, timeout=15, interval=0.1, what="every run in Flower")
    for run_id, task in found.items():
        assert task["worker"] == celery_worker.hostname
        assert re.fullmatch(rf"\[['\"]{run_id}['\"]\]", task["args"])
    # The handed runs' parent is the task whose end admitted them.
    assert found[ids[1]]["parent_id"] == found[ids[0]]["uuid"]
    assert found[ids[2]]["parent_id"] == found[ids[0]]["uuid"]


@pytest.mark.slow
def test_sweeps_stay_out_of_flowers_task_list(
    flower: str, celery_worker: Any, api: Any, project: ProjectKeys
) -> None:
    """Sweeps run every few seconds with or without work: Flower lists runs and commands,
    not sweeps (their counts are in /metrics)."""
    from celery.signals import task_postrun

    from reprise_server.shared import broker
    from reprise_server.workers.sweeps import SWEEPS

    ran: list[str] = []

    def record(sender: Any = None, **_: Any) -> None:
        ran.append(sender.name)

    task_postrun.connect(record, weak=False)
    try:
        # The real sender of sweeps: beat, here sweeping every half second.
        with reprise_process("beat", env={"REPRISE_SWEEP_INTERVAL_SECONDS": "0.5"}) as beat:
            wait_for(lambda: beat.alive() and {entry.name for entry in SWEEPS} <= set(ran),
                     timeout=30, what="beat's sweeps to run on the worker")
    finally:
        task_postrun.disconnect(record)
    # A run after the sweeps: once Flower has its events, it has had the sweeps' too.
    run_id = triggers.via_api(api, project)
    wait_for_status(run_id, "COMPLETED")

    def listed() -> dict[str, Any] | None:
        tasks: dict[str, Any] = httpx.get(
            f"{flower}/api/tasks", params={"limit": 1000}, auth=CREDENTIALS, timeout=5
        ).json()
        return tasks if any(run_id in (t.get("args") or "") for t in tasks.values()) else None

    names = {task["name"] for task in wait_for(listed, timeout=15, interval=0.1).values()}
    assert "reprise.execute_run" in names
    assert not names & {entry.name for entry in SWEEPS}, names
    assert broker.PROMOTE_DUE_RUNS in ran


@pytest.mark.slow
def test_flowers_broker_page_shows_the_run_queue(flower: str) -> None:
    """Flower picks its broker page by the broker URL's scheme: it runs on kombu's stock
    Redis transport (Reprise's transport class would stand in that URL's place)."""
    from reprise_server.shared.broker import queue_names
    from reprise_server.shared.settings import get_settings

    page = httpx.get(f"{flower}/broker", auth=CREDENTIALS, timeout=10)
    assert page.status_code == 200, page.text[:500]
    assert "redis://" in page.text
    assert queue_names(get_settings())["runs"] in page.text


def test_flower_uses_the_workers_broker_transport_options() -> None:
    """Flower runs on the workers' app; every broker connection it opens (event receiver,
    inspect/control) comes from ``app.connection()``, which carries these options."""
    from reprise_server.shared import broker
    from reprise_server.shared.settings import get_settings
    from reprise_server.workers.app import app

    assert app is broker.celery_app()
    options = get_settings().broker_transport_options
    assert options["visibility_timeout"] == get_settings().broker_visibility_timeout
    with app.connection() as connection:
        assert connection.transport_options == options
    with app.connection_for_read() as connection:
        assert connection.transport_options == options


def _settings(**values: Any) -> Settings:
    return Settings(database_url="postgresql://u@h/db", redis_url="redis://h:6379/0", **values)


def test_flower_refuses_to_start_without_basic_auth_outside_dev(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from reprise_server.workers.ops import run_flower

    code = run_flower("0.0.0.0", 5555, settings=_settings(mode="production", secret_key="k"))
    assert code == 2
    assert "REPRISE_FLOWER_BASIC_AUTH" in capsys.readouterr().err


def test_flower_environment_by_mode() -> None:
    from reprise_server.workers.ops import FlowerConfigurationError, flower_environment

    production = _settings(mode="production", secret_key="k", flower_basic_auth="a:b, c:d")
    assert flower_environment(production, "0.0.0.0") == {"FLOWER_BASIC_AUTH": "a:b,c:d"}
    # Dev without credentials: the UI is open; the HTTP API only on loopback.
    assert flower_environment(_settings(), "127.0.0.1") == {"FLOWER_UNAUTHENTICATED_API": "true"}
    assert flower_environment(_settings(), "0.0.0.0") == {}
    with pytest.raises(FlowerConfigurationError, match="user:password"):
        flower_environment(_settings(flower_basic_auth="no-colon"), "127.0.0.1")


def test_reprise_dev_can_start_flower_with_the_cli() -> None:
    from reprise_server.workers.ops import flower_command, flower_url

    command = flower_command(5555)
    assert command[1:4] == ["-m", "reprise.cli", "flower"]
    assert command[-2:] == ["--port", "5555"]
    assert flower_url(5555) == "http://127.0.0.1:5555/"


@pytest.mark.slow
def test_flower_shows_the_control_process_beside_the_workers(
    flower: str, celery_worker: Any
) -> None:
    import socket

    control_name = f"control-flower@{socket.gethostname()}"
    with reprise_process("control", "--hostname", control_name) as control:

        def online() -> bool:
            assert control.alive(), control.log()
            celery_app().control.heartbeat()
            text = httpx.get(f"{flower}/metrics", timeout=2).text
            return f'flower_worker_online{{worker="{control_name}"}} 1.0' in text

        wait_for(online, timeout=60, interval=0.25, what="Flower to see the control process")
        workers = httpx.get(f"{flower}/api/workers?refresh=1", auth=CREDENTIALS, timeout=10).json()
    assert {celery_worker.hostname, control_name} <= set(workers)
    assert "reprise.apply_command" in workers[control_name]["registered"]


def _flower_tasks_of(flower: str, run_id: str) -> list[dict[str, Any]]:
    tasks: dict[str, Any] = httpx.get(
        f"{flower}/api/tasks", params={"taskname": "reprise.execute_run", "limit": 1000},
        auth=CREDENTIALS, timeout=5,
    ).json()
    return [dict(task) for task in tasks.values() if run_id in (task.get("args") or "")]


def _settled_in_flower(flower: str, run_id: str, count: int) -> list[dict[str, Any]]:
    """The run's execution tasks in Flower once ``count`` of them have ended."""

    def ended() -> list[dict[str, Any]] | None:
        found = _flower_tasks_of(flower, run_id)
        done = [t for t in found if t.get("state") in ("SUCCESS", "FAILURE")]
        return found if len(done) >= count else None

    return wait_for(ended, timeout=20, interval=0.1, what=f"{run_id}'s tasks in Flower")


def _attempt_count(run_id: str) -> int:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs import attempts_repository

    with transaction() as session:
        return len(attempts_repository.attempts_of(session, [run_id])[run_id])


def _crash_on_the_last_attempt(project: ProjectKeys) -> str:
    """A run whose worker died on its last attempt: the next delivery finds it stale and
    crashes it (CRASHED, "Worker stopped responding on the last attempt")."""
    from datetime import timedelta

    from sqlalchemy import func, update

    from reprise_server.shared import broker
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs import attempts as steps
    from reprise_server.shared.runs.models import Run

    run_id = triggers.in_db(project, "test-echo", publish=False)
    with transaction() as session:
        assert not isinstance(steps.claim_run(session, run_id, "dead-worker"), steps.Outcome)
    with transaction() as session:
        assert steps.begin_attempt(session, run_id, "dead-worker", "20261122.1") is not None
    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(
            heartbeat_at=func.now() - timedelta(seconds=60)))
    broker.dispatch_run(run_id, None)
    return run_id


@pytest.mark.slow
def test_runs_that_fail_time_out_or_crash_fail_their_task_in_flower_without_a_retry(
    flower: str, celery_worker: Any, api: Any, project: ProjectKeys
) -> None:
    """Flower counts task events: a run that ends FAILED, TIMED_OUT or CRASHED is a task in
    state FAILURE (its exception names the run, its status and its error); a run that
    completes, and an attempt that fails with attempts left (the run retries), are SUCCESS.
    Celery never retries the task: each execution task is one attempt of the run."""
    failed = triggers.via_api(api, project, "test-fail-until", payload={}, maxAttempts=1)
    retried = triggers.via_api(api, project, "test-fail-until", payload={}, maxAttempts=2)
    timed_out = triggers.via_api(api, project, "test-block",
                                 payload={"gate": f"flower-{failed}", "maxWait": 10},
                                 maxDuration=1)
    completed = triggers.via_api(api, project)
    crashed = _crash_on_the_last_attempt(project)
    wait_for_status(failed, "FAILED")
    wait_for_status(retried, "FAILED")
    wait_for_status(timed_out, "TIMED_OUT", timeout=20)
    wait_for_status(completed, "COMPLETED")
    wait_for_status(crashed, "CRASHED")

    expected = {
        failed: ("FAILED", "ValueError: failing attempt 1"),
        retried: ("FAILED", "ValueError: failing attempt 2"),
        timed_out: ("TIMED_OUT", "MaxDurationExceededError: Run exceeded its maxDuration of 1s"),
        crashed: ("CRASHED", "WorkerLost: Worker stopped responding on the last attempt"),
    }
    for run_id, (status, error) in expected.items():
        attempts = _attempt_count(run_id)
        tasks = _settled_in_flower(flower, run_id, attempts if run_id != crashed else 1)
        # No Celery retry: one task per attempt the run executed (the crash: the one
        # delivery that found the dead worker's attempt), none retried.
        assert len(tasks) == (attempts if run_id != crashed else 1), tasks
        assert all(task["retries"] == 0 for task in tasks), tasks
        last = max(tasks, key=lambda task: task["received"])
        assert last["state"] == "FAILURE", last
        assert last["exception"] == f"RunFailed('run {run_id} {status}: {error}')"
        assert [t["state"] for t in tasks if t is not last] == ["SUCCESS"] * (len(tasks) - 1)
    # What an operator filters on: Flower's failed tasks are these runs.
    failures = httpx.get(f"{flower}/api/tasks", params={"state": "FAILURE", "limit": 1000},
                         auth=CREDENTIALS, timeout=5).json()
    failed_runs = {run_id for run_id in expected
                   if any(run_id in (t.get("args") or "") for t in failures.values())}
    assert failed_runs == set(expected)
    [success] = _settled_in_flower(flower, completed, 1)
    assert success["state"] == "SUCCESS"
    assert not any(completed in (t.get("args") or "") for t in failures.values())


def test_the_run_failure_is_expected_by_celery_and_never_retried() -> None:
    """``RunFailed`` is in the task's ``throws`` (logged as one INFO line without a
    traceback), excluded from its autoretry, and its message is acknowledged."""
    import pickle

    from billiard.einfo import ExceptionInfo
    from celery.app.trace import get_log_policy, log_policy_expected

    from reprise_server.workers.tasks import RunFailed, execute_run

    error = RunFailed.of("run_x", "FAILED", "ValueError: bad\n  value " + "x" * 400)
    assert "\n" not in str(error)
    assert len(str(error)) < 350
    assert pickle.loads(pickle.dumps(error)).args == error.args  # crosses the prefork pool
    try:
        raise error
    except RunFailed:
        einfo = ExceptionInfo()
    assert get_log_policy(execute_run, einfo, error) is log_policy_expected
    assert log_policy_expected.traceback == 0
    assert RunFailed in execute_run.throws
    assert RunFailed in execute_run.dont_autoretry_for
    assert not issubclass(RunFailed, tuple(execute_run.autoretry_for))
    assert execute_run.acks_late is True
    assert execute_run.acks_on_failure is True
