"""Durable steps and waits on real workers: ``reprise worker`` processes (prefork) with
``reprise control`` and ``reprise beat`` on a queue prefix of the module's own. The tasks
(tests/support/tasks.py, ``durable-``) append each step's real execution to a ledger file,
so the tests count how often a step's function ran across waits, retries and kills."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

from reprise_server.shared.db import transaction
from reprise_server.shared.durable import service as durable
from reprise_server.shared.durable.models import RunStep, Waitpoint
from reprise_server.shared.runs.models import Attempt, Run
from reprise_server.shared.runs.service import cancel_run
from tests.support import triggers
from tests.support.durable_rows import stored
from tests.support.fixtures import ProjectKeys, wait_for
from tests.support.processes import ReproProcess, reprise_process, run_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

FINAL = {"COMPLETED", "FAILED", "CANCELED", "CRASHED", "SYSTEM_FAILURE", "TIMED_OUT",
         "EXPIRED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ReproProcess]]:
    """One prefork worker with ONE slot (a waiting run must not hold it), the control
    process (timers) and beat (the sweeps), serving the module's own queue prefix."""
    with run_stack("durable", tmp_path_factory.mktemp("beat") / "beat-schedule") as procs:
        yield procs


def run_of(run_id: str) -> Run:
    return stored(Run, run_id)


def wait_status(run_id: str, procs: list[ReproProcess], *statuses: str,
                timeout: float = 60) -> Run:
    wanted = set(statuses) or FINAL

    def reached() -> Run | None:
        for proc in procs:
            assert proc.alive(), proc.log()
        run = run_of(run_id)
        return run if run.status.value in wanted else None

    return wait_for(reached, timeout=timeout, interval=0.05,
                    what=f"{run_id} to reach {sorted(wanted)} (is {run_of(run_id).status})")


def attempts_of(run_id: str) -> list[str]:
    with transaction() as session:
        return [str(s) for s in session.scalars(
            select(Attempt.status).where(Attempt.run_id == run_id).order_by(Attempt.number))]


def steps_of(run_id: str) -> list[tuple[str, str, str]]:
    with transaction() as session:
        return [(s.kind, s.name, s.status) for s in durable.steps_of(session, run_id)]


def ledger_lines(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def trigger(project: ProjectKeys, task: str, payload: dict[str, Any], **options: Any) -> str:
    return triggers.in_db(project, task, payload=payload, **options)


def test_a_waiting_run_frees_its_slot_and_its_steps_run_once(
    project: ProjectKeys, stack: list[ReproProcess], tmp_path: Path
) -> None:
    """The worker has one slot. A run waits 3 s between two steps: meanwhile another run
    takes that slot and completes. The waiting run resumes, runs from the top, and each
    step's function ran exactly once; the resume is an attempt, not a retry."""
    ledger = tmp_path / "ledger"
    waiting = trigger(project, "durable-steps", {"ledger": str(ledger), "wait": 3})
    wait_status(waiting, stack, "WAITING")
    assert run_of(waiting).locked_by is not None  # no worker executes it, none holds it
    other = triggers.in_db(project, "test-echo", payload={"n": 1})
    done = wait_status(other, stack, "COMPLETED", timeout=30)
    assert run_of(waiting).status.value == "WAITING"  # the other ran while it waited
    finished = wait_status(waiting, stack)
    assert finished.status.value == "COMPLETED", finished.error
    assert finished.output == {"a": "a", "b": "b", "resumes": 1, "fromStep": None}
    assert finished.finished_at is not None
    assert done.finished_at is not None
    assert done.finished_at < finished.finished_at
    assert ledger_lines(ledger) == ["a", "b"]
    assert attempts_of(waiting) == ["PAUSED", "COMPLETED"]  # max_attempts=1 and not FAILED
    assert steps_of(waiting) == [("step", "a", "COMPLETED"), ("wait", "wait", "COMPLETED"),
                                 ("step", "b", "COMPLETED")]


def test_a_retry_answers_completed_steps_from_the_record(
    project: ProjectKeys, stack: list[ReproProcess], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    run_id = trigger(project, "durable-retry", {"ledger": str(ledger)})
    run = wait_status(run_id, stack, timeout=60)
    assert run.status.value == "COMPLETED", run.error
    assert run.output == {"charge": "charge", "attempt": 2}
    assert ledger_lines(ledger) == ["charge"]


def test_a_crash_inside_a_step_runs_only_that_step_again(
    project: ProjectKeys, stack: list[ReproProcess], tmp_path: Path
) -> None:
    """Step b kills its pool process mid-step: the recovery re-executes the run, step a
    is answered from the record and step b (cut before it was recorded) runs again."""
    ledger = tmp_path / "ledger"
    run_id = trigger(project, "durable-crash",
                     {"ledger": str(ledger), "marker": str(tmp_path / "killed")})
    run = wait_status(run_id, stack, timeout=90)
    assert run.status.value == "COMPLETED", run.error
    assert ledger_lines(ledger) == ["a", "b", "b"]


def test_code_that_departs_from_its_record_fails_naming_the_step(
    project: ProjectKeys, stack: list[ReproProcess], tmp_path: Path
) -> None:
    run_id = trigger(project, "durable-nondet", {"marker": str(tmp_path / "marker")})
    run = wait_status(run_id, stack)
    assert run.status.value == "FAILED"
    assert run.error is not None
    assert run.error["name"] == "NonDeterminismError"
    assert "'changed'" in run.error["message"]
    assert "'first'" in run.error["message"]
    assert attempts_of(run_id) == ["PAUSED", "FAILED"]  # not retried: max_attempts is 3


def test_trigger_and_wait_returns_the_output_or_the_childs_failure(
    project: ProjectKeys, stack: list[ReproProcess], tmp_path: Path
) -> None:
    ok = trigger(project, "durable-parent", {"child": {"n": 21}})
    failing = trigger(project, "durable-parent", {"child": {"n": 1, "fail": True}})
    for run_id in (ok, failing):
        assert wait_status(run_id, stack).status.value == "COMPLETED"
    assert run_of(ok).output["child"] == {"n": 21, "double": 42}
    assert run_of(failing).output["child"] == {"failed": "FAILED", "error": "child 1 fails"}
    assert attempts_of(ok) == ["PAUSED", "COMPLETED"]


def test_a_batch_wait_returns_every_childs_result_in_order(
    project: ProjectKeys, stack: list[ReproProcess]
) -> None:
    children = [{"n": 1, "seconds": 0.3}, {"n": 2, "fail": True}, {"n": 3}]
    run_id = trigger(project, "durable-batch", {"children": children})
    run = wait_status(run_id, stack)
    assert run.status.value == "COMPLETED", run.error
    assert run.output == [{"n": 1, "double": 2}, {"failed": "FAILED"}, {"n": 3, "double": 6}]
    with transaction() as session:
        kids = session.scalars(select(Run).where(Run.parent_run_id == run_id)).all()
        assert len(kids) == 3  # triggered once, though the parent ran twice


def _token(project: ProjectKeys, **values: Any) -> str:
    with transaction() as session:
        token_id = f"waitpoint_{secrets.token_hex(8)}"
        session.add(Waitpoint(
            id=token_id, project_id=project.project_id,
            environment_id=project.environment_ids["dev"], type="TOKEN", status="WAITING",
            tags=[], output_is_error=False, **values,
        ))
    return token_id


def test_a_token_completed_resumes_its_run_with_the_data_and_a_second_completion_changes_nothing(
    project: ProjectKeys, stack: list[ReproProcess]
) -> None:
    token = _token(project)
    run_id = trigger(project, "durable-token", {"token": token})
    wait_status(run_id, stack, "WAITING")
    with transaction() as session:
        assert durable.complete_waitpoint(session, token, {"approved": True})
    with transaction() as session:
        assert not durable.complete_waitpoint(session, token, {"approved": False})
    run = wait_status(run_id, stack)
    assert run.output == {"data": {"approved": True}}


def test_a_token_that_times_out_raises_in_the_task(
    project: ProjectKeys, stack: list[ReproProcess]
) -> None:
    token = _token(project)
    run_id = trigger(project, "durable-token", {"token": token, "timeout": 1})
    run = wait_status(run_id, stack)
    assert run.output == {"timedOut": True}


def test_canceling_a_waiting_run_ends_it_at_once(
    project: ProjectKeys, stack: list[ReproProcess], tmp_path: Path
) -> None:
    run_id = trigger(project, "durable-steps", {"ledger": str(tmp_path / "l"), "wait": 600})
    wait_status(run_id, stack, "WAITING")
    with transaction() as session:
        cancel_run(session, run_id)
    assert run_of(run_id).status.value == "CANCELED"


def test_a_wait_survives_a_redis_flush_and_kill_9_of_every_process(
    project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    """A run waits 3 s on a stack of its own. Every process is killed (-9) while it waits
    (the control process held its timer in memory), and the queues' keys in Redis are
    deleted (a flush of everything the stack had there). A new stack resumes the run when
    it is due: from the sweep, which finds the waitpoint in Postgres."""
    import redis

    from reprise_server.shared.settings import get_settings

    ledger = tmp_path / "ledger"
    env = {"REPRISE_QUEUE_PREFIX": own_queues}

    def start(stack: ExitStack) -> list[ReproProcess]:
        worker = stack.enter_context(reprise_process(
            "worker", "--pool", "prefork", "--concurrency", "1", env=env, own_group=True))
        control = stack.enter_context(reprise_process("control", env=env, own_group=True))
        beat = stack.enter_context(reprise_process(
            "beat", "--schedule", str(tmp_path / f"beat-{time.monotonic()}"), env=env,
            own_group=True))
        return [worker, control, beat]

    with ExitStack() as first:
        procs = start(first)
        run_id = trigger(project, "durable-steps", {"ledger": str(ledger), "wait": 3})
        wait_status(run_id, procs, "WAITING")
        for proc in procs:
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.signal_group(signal.SIGKILL)
            for child in children:
                child.kill()
            proc.wait(10)
    client = redis.Redis.from_url(get_settings().redis_url)
    keys = client.keys(f"{own_queues}*") + client.keys("unacked*")
    if keys:
        client.delete(*keys)
    assert run_of(run_id).status.value == "WAITING"
    with ExitStack() as second:
        procs = start(second)
        run = wait_status(run_id, procs, timeout=90)
    assert run.status.value == "COMPLETED", run.error
    assert ledger_lines(ledger) == ["a", "b"]


def test_replay_from_a_step_reuses_the_record_before_it(
    project: ProjectKeys, stack: list[ReproProcess], tmp_path: Path, api: Any
) -> None:
    from reprise_server.shared.commands.schemas import ReplayRequest
    from reprise_server.shared.commands.service import accept_replay, apply_command
    from reprise_server.shared.dashboard import run_head
    from reprise_server.shared.projects.service import AuthContext

    ledger = tmp_path / "ledger"
    original = trigger(project, "durable-steps", {"ledger": str(ledger), "wait": 0.2})
    assert wait_status(original, stack).status.value == "COMPLETED"
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    with transaction() as session:
        accepted = accept_replay(session, auth, run_head(session, auth, original),
                                 ReplayRequest.model_validate({"fromStep": "b"}), publish=False)
        assert accepted.id is not None
        apply_command(session, accepted.id, "test")
    new_id = accepted.target_run_id
    run = wait_status(new_id, stack, timeout=60)
    assert run.status.value == "COMPLETED", run.error
    assert run.output["fromStep"] == "b"
    assert ledger_lines(ledger) == ["a", "b", "b"]  # the replay ran only step b
    assert steps_of(new_id)[:2] == [("step", "a", "COMPLETED"), ("wait", "wait", "COMPLETED")]
    assert run.resumed_from == {"step": "b", "position": 2}
    # Lineage records it: on the run object and on its dashboard page.
    shown = api.get(f"/api/v3/runs/{new_id}", headers=project.headers()).json()
    assert shown["resumedFrom"] == {"step": "b", "position": 2}
    assert shown["replayedFrom"] == original
    from tests.api.test_dashboard_queues import sign_in

    sign_in(api, project)
    page = api.get(f"/dashboard/runs/{new_id}?env=dev").text
    assert "Started from step <code>b</code> (position 2 of the record)" in page


def test_a_checkpoint_replay_tells_the_task_where_it_resumes(
    project: ProjectKeys, stack: list[ReproProcess]
) -> None:
    """A replay from checkpoint 2 of an import of 3 rows: the task sees the checkpoint's
    state as its payload, which checkpoint it is, and the original payload."""
    from reprise_server.shared.commands.schemas import ReplayRequest
    from reprise_server.shared.commands.service import accept_replay, apply_command
    from reprise_server.shared.dashboard import run_head
    from reprise_server.shared.projects.service import AuthContext

    original = trigger(project, "durable-checkpointed", {"rows": 3})
    assert wait_status(original, stack).output == {"start": 0, "checkpoint": None,
                                                   "original": None}
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    with transaction() as session:
        accepted = accept_replay(session, auth, run_head(session, auth, original),
                                 ReplayRequest.model_validate({"fromCheckpoint": 2}),
                                 checkpoint=2, publish=False)
        assert accepted.id is not None
        apply_command(session, accepted.id, "test")
    run = wait_status(accepted.target_run_id, stack)
    assert run.payload == {"done": 2}
    assert run.output == {"start": 2, "checkpoint": 2, "original": {"rows": 3}}


def test_a_large_step_result_is_kept_as_a_packet_and_read_back_on_resume(
    project: ProjectKeys, stack: list[ReproProcess]
) -> None:
    run_id = trigger(project, "durable-big-step", {})
    run = wait_status(run_id, stack)
    assert run.status.value == "COMPLETED", run.error
    assert run.output == {"rows": 6000, "last": {"i": 5999, "text": "x" * 20}}
    with transaction() as session:
        step = session.get(RunStep, (run_id, 0))
        assert step is not None
        assert step.output is None
        assert step.detail == {"packet": f"steps/{run_id}/0.json"}


def test_a_waiting_run_does_not_expire_by_its_ttl(
    project: ProjectKeys, stack: list[ReproProcess], tmp_path: Path
) -> None:
    """A TTL bounds how long a run may wait to start, not a durable wait: a run with a 1 s
    TTL that waits 2 s still completes."""
    run_id = trigger(project, "durable-steps", {"ledger": str(tmp_path / "l"), "wait": 2},
                     ttl="1s")
    run = wait_status(run_id, stack)
    assert run.status.value == "COMPLETED", run.error


def test_canceling_a_waiting_parent_with_its_children_cancels_them_at_once(
    project: ProjectKeys, stack: list[ReproProcess], api: Any
) -> None:
    """A parent waits for a child that waits for a token: a cancel with
    ``cancelChildren`` ends both at once."""
    token = _token(project)
    parent = trigger(project, "durable-grandparent", {"token": token})
    wait_status(parent, stack, "WAITING")
    with transaction() as session:
        [child] = session.scalars(select(Run.id).where(Run.parent_run_id == parent)).all()
    wait_status(child, stack, "WAITING")
    response = api.post(f"/api/v2/runs/{parent}/cancel?cancelChildren=true",
                        headers=project.headers())
    assert response.status_code == 200, response.text
    assert run_of(parent).status.value == "CANCELED"
    assert run_of(child).status.value == "CANCELED"
