"""Concurrency limits on real workers: ``reprise worker`` processes (prefork) consuming a
queue prefix of the test's own, the tasks writing an execution ledger as they enter and
leave their function (tests/support/tasks.py, ``flow-``). Each test asserts the most
executions the ledger ever saw inside at once against the bound, that every run ends,
and that the counters are back to what the slots and the line say."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, text, update

from reprise_server.shared.db import transaction
from reprise_server.shared.flow import limits, queues
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.service import cancel_run
from reprise_server.shared.ttl.service import expire_stale_runs
from tests.support import flow
from tests.support.fixtures import ProjectKeys, wait_for
from tests.support.processes import ReproProcess, reprise_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@contextmanager
def workers(prefix: str, *names: str, concurrency: int = 3, own_group: bool = False,
            **env: str) -> Iterator[list[ReproProcess]]:
    """``reprise worker --pool prefork`` processes serving ``prefix``, stopped together."""
    with ExitStack() as stack:
        procs = [
            stack.enter_context(reprise_process(
                "worker", "--pool", "prefork", "--concurrency", str(concurrency),
                "--hostname", f"{name}-{os.getpid()}@%h",
                env={"REPRISE_QUEUE_PREFIX": prefix, **env}, own_group=own_group,
            ))
            for name in names
        ]
        try:
            yield procs
        finally:
            for proc in procs:  # all at once: their warm shutdowns overlap
                if proc.alive():
                    proc.signal(signal.SIGTERM)


@pytest.fixture(scope="module")
def pool() -> Iterator[tuple[str, list[ReproProcess]]]:
    """Two workers (three slots each) for the module's tests that need no fault of their
    own, on a queue prefix of the module's: what the tests publish reaches only them."""
    import redis
    from celery import Celery

    from reprise_server.shared import broker
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    prefix = f"{settings.queue_prefix}-flow-{secrets.token_hex(3)}"
    app = broker.configure_celery(
        Celery("reprise-flow"), settings.model_copy(update={"queue_prefix": prefix})
    )
    # A hand-off long enough that a loaded machine never ends one mid-test (the test of
    # the hand-off counts on every run of a line executing in one process).
    with pytest.MonkeyPatch.context() as patch, \
            workers(prefix, "a", "b", REPRISE_WORKER_HANDOFF_SECONDS="30") as procs:
        patch.setattr(broker, "celery_app", lambda: app)
        yield prefix, procs
    client = redis.Redis.from_url(settings.redis_url)
    leftovers = client.keys(f"{prefix}.*")
    if leftovers:
        client.delete(*leftovers)


@contextmanager
def control(prefix: str, schedule: Path, **env: str) -> Iterator[None]:
    """``reprise control`` and ``reprise beat``: the sweeps (lost messages, admission)."""
    env = {"REPRISE_QUEUE_PREFIX": prefix, **env}
    with reprise_process("control", env=env), \
            reprise_process("beat", "--schedule", str(schedule), env=env):
        yield


def statuses(ids: list[str]) -> dict[str, str]:
    return {run_id: status for run_id, (status, _) in flow.admission_of(ids).items()}


def wait_finished(ids: list[str], procs: list[ReproProcess], timeout: float = 60,
                  status: str = "COMPLETED") -> None:
    def done() -> bool:
        for proc in procs:
            assert proc.alive(), proc.log()
        return set(statuses(ids).values()) == {status}

    wait_for(done, timeout=timeout, interval=0.05,
             what=f"every run {status}: {statuses(ids)}")


def assert_released(*lids: str) -> None:
    for lid in lids:
        st = flow.state(lid)
        assert (st.running, st.slots, st.waiting) == (0, 0, 0), st
        assert all(counts == (0, 0) for counts in st.keys.values()), st
    flow.assert_consistent(*lids)


def test_a_limit_of_two_never_runs_three_at_once(
    project: ProjectKeys, pool: tuple[str, list[ReproProcess]], tmp_path: Path
) -> None:
    ledger = flow.Ledger(tmp_path / "ledger")
    _, procs = pool
    ids = flow.trigger(project, "flow-two", 6,
                       payload={"ledger": str(ledger.path), "seconds": 0.5})
    wait_finished(ids, procs)
    assert len(ledger.entered()) == 6
    assert ledger.peak() == 2  # six worker slots free: only the limit held them back
    assert_released(flow.limit_id(project, "task/flow-two"))


def test_keys_are_separate_pools_under_a_shared_total(
    project: ProjectKeys, pool: tuple[str, list[ReproProcess]], tmp_path: Path
) -> None:
    ledger = flow.Ledger(tmp_path / "ledger")
    _, procs = pool
    ids = [
        run_id for k in range(5) for run_id in flow.trigger(
            project, "flow-keyed", 2, concurrencyKey=f"k{k}",
            payload={"ledger": str(ledger.path), "seconds": 0.3, "key": f"k{k}"})
    ]
    wait_finished(ids, procs)
    assert len(ledger.entered()) == 10
    assert ledger.peak() == 3  # the total
    assert set(ledger.peak_per_key().values()) == {1}  # per key
    assert_released(flow.limit_id(project, "task/flow-keyed"))


def test_a_named_limit_bounds_the_two_tasks_sharing_it(
    project: ProjectKeys, pool: tuple[str, list[ReproProcess]], tmp_path: Path
) -> None:
    ledger = flow.Ledger(tmp_path / "ledger")
    payload = {"ledger": str(ledger.path), "seconds": 0.3}
    _, procs = pool
    ids = []
    for _ in range(3):
        ids += flow.trigger(project, "flow-shared-a", 1, payload=payload)
        ids += flow.trigger(project, "flow-shared-b", 1, payload=payload)
    wait_finished(ids, procs)
    assert len(ledger.entered()) == 6
    assert ledger.peak() == 2
    assert_released(flow.limit_id(project, "flow-shared"))


def test_each_freed_slot_runs_its_next_run_in_the_process_that_freed_it(
    project: ProjectKeys, pool: tuple[str, list[ReproProcess]], tmp_path: Path
) -> None:
    """Six worker slots, a limit of one: the first run is delivered; each run's end admits
    the next, and the pool process that ended it executes it (hand-off), with no message."""
    ledger = flow.Ledger(tmp_path / "ledger")
    _, procs = pool
    ids = flow.trigger(project, "flow-one", 5,
                       payload={"ledger": str(ledger.path), "seconds": 0.05})
    wait_finished(ids, procs)
    assert ledger.entered() == ids
    assert len({pid for *_, pid in ledger.events()}) == 1, ledger.events()
    logs = "\n".join(proc.log(lines=100_000) for proc in procs)
    for run_id in ids[1:]:
        assert f"run {run_id} -> COMPLETED (in the slot its predecessor freed)" in logs, logs
    assert ledger.peak() == 1
    assert_released(flow.limit_id(project, "task/flow-one"))


def test_a_stopping_worker_publishes_the_run_a_freed_slot_admits(
    project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    """A warm shutdown waits for the run executing, not for the line behind it: the run its
    end admits is published, and another worker (hand-off turned off) executes the rest,
    each one delivered."""
    ledger = flow.Ledger(tmp_path / "ledger")
    gate = tmp_path / "gate"
    payload = {"ledger": str(ledger.path), "hold": str(gate)}
    with workers(own_queues, "stopping", concurrency=2) as [stopping]:
        ids = flow.trigger(project, "flow-one", 3, payload=payload)
        wait_for(lambda: ledger.inside() == {ids[0]}, timeout=60, what="the first running")
        stopping.signal(signal.SIGTERM)
        wait_for(lambda: "Warm shutdown" in stopping.log(lines=100_000), timeout=10,
                 what="the warm shutdown to begin")
        gate.touch()
        assert stopping.wait(30) == 0, stopping.log()
    assert ledger.entered() == [ids[0]]
    assert flow.admitted(ids) == [ids[1]]
    assert flow.messages(ids) == [ids[1]]
    with workers(own_queues, "off", concurrency=2, REPRISE_WORKER_HANDOFF_SECONDS="0") as procs:
        wait_finished(ids, procs)
        logs = procs[0].log(lines=100_000)
    assert "predecessor freed" not in logs
    assert ledger.entered() == ids
    assert ledger.peak() == 1
    assert_released(flow.limit_id(project, "task/flow-one"))


def test_a_killed_worker_keeps_its_slots_until_recovery_hands_them_on(
    project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    """kill -9 to a worker running both runs a limit of two admits: the other runs wait
    (the slots are still held by the runs the dead worker had), the recovery sweep gives
    those runs to the surviving worker, and everything ends with the bound kept."""
    ledger = flow.Ledger(tmp_path / "ledger")
    gate = tmp_path / "gate"
    payload = {"ledger": str(ledger.path), "hold": str(gate)}
    # The sweeps run all along (started with the first worker, to overlap their boots).
    with control(own_queues, tmp_path / "beat-schedule"):
        with workers(own_queues, "doomed", concurrency=2, own_group=True) as [doomed]:
            ids = flow.trigger(project, "flow-two", 5, payload=payload)
            wait_for(lambda: len(ledger.inside()) == 2, timeout=60, what="two runs executing")
            victims = sorted(ledger.inside())
            pids = sorted(ledger.pids_inside())
            children = psutil.Process(doomed.pid).children(recursive=True)
            doomed.signal_group(signal.SIGKILL)
            for child in children:  # pool children may have left the group
                child.kill()
            doomed.wait(10)
            psutil.wait_procs(children, timeout=10)
            ledger.killed(pids)
        # Dead, and still holding the slots: nothing else was admitted.
        assert flow.admitted(ids) == victims
        with workers(own_queues, "survivor", concurrency=3) as procs:
            wait_for(lambda: len(ledger.inside()) == 2, timeout=60,
                     what="the recovered runs executing again")
            assert ledger.inside() == set(victims)  # re-executed; nothing else got in
            assert flow.admitted(ids) == victims
            gate.touch()
            wait_finished(ids, procs)
    assert ledger.peak() == 2
    with transaction() as session:
        attempts = dict(session.execute(text(
            "SELECT id, attempt_count FROM runs WHERE id = ANY(:ids)"), {"ids": ids}).all())
    assert {attempts[v] for v in victims} == {2}
    assert_released(flow.limit_id(project, "task/flow-two"))


def test_cancel_timeout_ttl_and_retries_each_free_their_slot(
    project: ProjectKeys, pool: tuple[str, list[ReproProcess]], tmp_path: Path
) -> None:
    """Under a limit of one: a canceled run, a run past its maxDuration, a waiting run
    past its TTL and a run retrying each give their place back, and the next run in line
    is admitted at once each time."""
    lid = flow.limit_id(project, "task/flow-one")
    ledger = flow.Ledger(tmp_path / "ledger")
    gate = tmp_path / "gate"
    held = {"ledger": str(ledger.path), "hold": str(gate)}
    quick = {"ledger": str(ledger.path), "seconds": 0.05}
    _, procs = pool
    [canceled] = flow.trigger(project, "flow-one", 1, payload=held)
    [timed_out] = flow.trigger(project, "flow-one", 1, payload=held, maxDuration=1)
    [expiring] = flow.trigger(project, "flow-one", 1, payload=quick, ttl="1h")
    [retried] = flow.trigger(project, "flow-one", 1, payload={**quick, "failUntil": 2})
    [last] = flow.trigger(project, "flow-one", 1, payload=quick)
    wait_for(lambda: ledger.inside() == {canceled}, timeout=30, what="the first running")
    assert flow.state(lid).waiting == 4

    with transaction() as session:  # its waiting TTL is over
        session.execute(update(Run).where(Run.id == expiring).values(
            ttl_expires_at=func.now() - timedelta(seconds=1)))
    with transaction() as session:
        assert expire_stale_runs(session) == 1
    assert flow.state(lid).waiting == 3
    flow.assert_consistent(lid)

    with transaction() as session:
        cancel_run(session, canceled)
    # The cancel freed the slot: the next one (maxDuration 1 s) was admitted and runs.
    wait_for(lambda: timed_out in ledger.inside(), timeout=30, what="the next running")
    wait_finished([timed_out], procs, status="TIMED_OUT")
    # The timeout freed it for the retrying run, whose backoff freed it for the last
    # one; the retry re-entered the line behind it and ran again after it.
    wait_finished([retried, last], procs)
    wait_finished([canceled], procs, status="CANCELED")
    wait_for(lambda: not ledger.inside(), timeout=30, what="every execution to leave")
    order = ledger.entered()
    assert order == [canceled, timed_out, retried, last, retried]
    assert ledger.peak() == 1
    assert statuses([expiring]) == {expiring: "EXPIRED"}
    assert_released(lid)


def test_higher_priority_runs_start_first(
    project: ProjectKeys, pool: tuple[str, list[ReproProcess]], tmp_path: Path
) -> None:
    ledger = flow.Ledger(tmp_path / "ledger")
    gate = tmp_path / "gate"
    quick = {"ledger": str(ledger.path), "seconds": 0.05}
    _, procs = pool
    [first] = flow.trigger(project, "flow-one", 1,
                           payload={"ledger": str(ledger.path), "hold": str(gate)})
    wait_for(lambda: ledger.inside() == {first}, timeout=30, what="the first running")
    by_priority = {p: flow.trigger(project, "flow-one", 1, payload=quick, priority=p)[0]
                   for p in (0, 30, 10, 3600, 5)}
    gate.touch()
    wait_finished([first, *by_priority.values()], procs)
    assert ledger.entered() == [first] + [by_priority[p] for p in (3600, 30, 10, 5, 0)]
    assert ledger.peak() == 1


def test_pausing_and_resuming_a_queue_and_a_limit_and_widening_it(
    project: ProjectKeys, pool: tuple[str, list[ReproProcess]], tmp_path: Path
) -> None:
    env = project.environment_ids["dev"]
    lid = flow.limit_id(project, "task/flow-two")
    ledger = flow.Ledger(tmp_path / "ledger")
    gate = tmp_path / "gate"
    held = {"ledger": str(ledger.path), "hold": str(gate)}
    _, procs = pool
    with transaction() as session:
        queues.set_paused(session, env, "flow-two", "task", True)
    ids = flow.trigger(project, "flow-two", 6, payload=held)
    assert {adm for _, adm in flow.admission_of(ids).values()} == {"paused"}
    with transaction() as session:
        limits.set_paused(session, env, "task/flow-two", True)
    with transaction() as session:
        queues.set_paused(session, env, "flow-two", "task", False)
    # The queue is open again but the limit is paused: every run waits in line.
    assert {adm for _, adm in flow.admission_of(ids).values()} == {"waiting"}
    assert flow.admitted(ids) == []
    with transaction() as session:
        limits.set_paused(session, env, "task/flow-two", False)
    wait_for(lambda: len(ledger.inside()) == 2, timeout=30, what="two running")
    # Widening admits waiting runs at once: four inside, never more.
    with transaction() as session:
        limits.override(session, env, "task/flow-two", total=4)
    wait_for(lambda: len(ledger.inside()) == 4, timeout=30, what="four running")
    # Back to two: nothing running is stopped, nothing new starts until below two.
    with transaction() as session:
        limits.reset(session, env, "task/flow-two")
    assert len(flow.admitted(ids)) == 4
    gate.touch()
    wait_finished(ids, procs)
    assert ledger.peak() == 4
    # After the reset, no run entered while two or more were inside.
    events = ledger.events()
    inside = 0
    entered = 0
    for event, *_ in events:
        if event == "enter":
            entered += 1
            if entered > 4:
                assert inside < 2, events
            inside += 1
        elif event == "exit":
            inside -= 1
    assert_released(lid)


def test_redis_flushall_mid_load_loses_no_run_and_keeps_the_bound(
    project: ProjectKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis of the test's own (never the shared one) flushed twice: once with admitted
    runs' messages waiting for a worker, once mid-load. The lost messages are republished
    by the recovery sweep; waiting runs never depended on Redis."""
    import redis
    from celery import Celery

    from reprise_server.shared import broker
    from reprise_server.shared.settings import get_settings
    from reprise_server.workers.devstack import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    url = server.start()
    try:
        prefix = f"flow-flush-{secrets.token_hex(3)}"
        own = get_settings().model_copy(update={"queue_prefix": prefix, "redis_url": url})
        app = broker.configure_celery(Celery("reprise-flow-flush"), own)
        monkeypatch.setattr(broker, "celery_app", lambda: app)
        env = {"REPRISE_REDIS_URL": url, "REPRISE_REDISPATCH_AFTER_SECONDS": "1"}
        client = redis.Redis.from_url(url)
        ledger = flow.Ledger(tmp_path / "ledger")
        payload = {"ledger": str(ledger.path), "seconds": 0.2}

        # No worker yet: the two admitted runs' messages wait in Redis, and are flushed.
        ids = flow.trigger(project, "flow-two", 12, payload=payload)
        assert len(flow.admitted(ids)) == 2
        assert client.dbsize() > 0
        client.flushall()
        with workers(prefix, "a", "b", **env) as procs, \
                control(prefix, tmp_path / "beat-schedule", **env):
            wait_for(lambda: len(ledger.entered()) >= 6, timeout=60, what="half the runs")
            client.flushall()  # mid-load
            wait_finished(ids, procs, timeout=90)
        assert ledger.peak() <= 2
        assert sorted(set(ledger.entered())) == sorted(ids)
        assert_released(flow.limit_id(project, "task/flow-two"))
    finally:
        server.stop()
