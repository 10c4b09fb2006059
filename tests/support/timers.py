"""Helpers for timer and TTL tests: runs in chosen states, parked timers, timer outcomes.

``parked_timers`` sends the real ``reprise.promote_delayed_run`` Celery messages to a real
Redis queue that no worker consumes, so a test decides what happens to a timer: deliver it
(once, twice) to the queue the workers consume, or lose it (FLUSHDB).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.fixtures import ProjectKeys, wait_for


def sql(statement: str, **params: Any) -> Any:
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return session.execute(text(statement), params)


def backdate(run_id: str, column: str, seconds: float = 1.0) -> None:
    """Set a timestamp column of a run to ``seconds`` ago (as if time had passed)."""
    assert column in {"delayed_until", "ttl_expires_at"}
    sql(f"UPDATE runs SET {column} = now() - make_interval(secs => :s) WHERE id = :id",
        s=seconds, id=run_id)


def db_clock() -> datetime:
    from reprise_server.shared.db import db_now, transaction

    with transaction() as session:
        return db_now(session)


def wait_until_due(run_id: str) -> None:
    """Poll the database clock until the run's ``delayed_until`` has passed."""
    from tests.support.fixtures import run_row

    due = run_row(run_id).delayed_until
    wait_for(lambda: db_clock() >= due, what=f"{run_id} to be due")


def reschedule(session: Any, run_id: str, due: datetime) -> Any:
    """What a reschedule does to the timer tier (the command adds validation and 400s)."""
    from reprise_server.shared.db import db_now
    from reprise_server.shared.runs import lifecycle

    return lifecycle.reschedule(session, run_id, due, db_now(session))


class InThread:
    """Run ``fn`` in a thread; ``result()`` joins it and returns (or raises) its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:
            self._error = exc

    def result(self, timeout: float = 15.0) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "thread did not finish"
        if self._error is not None:
            raise self._error
        return self._value


@dataclass
class ParkedTimers:
    queue: str
    client: Any

    def raw(self) -> list[bytes]:
        return list(reversed(self.client.lrange(self.queue, 0, -1)))  # oldest first

    def timers(self) -> list[tuple[str, int, str | None]]:
        """``(run_id, token, eta)`` of every parked timer, oldest first."""
        found = []
        for raw in self.raw():
            message = json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
            found.append((args[0], args[1], message["headers"].get("eta")))
        return found

    def deliver(self, raw: bytes, copies: int = 1) -> None:
        """Put the very same message on the queue the workers consume, ``copies`` times."""
        from reprise_server.shared.broker import queue_names
        from reprise_server.shared.settings import get_settings

        timers_queue = queue_names(get_settings())["timers"]
        for _ in range(copies):
            self.client.lpush(timers_queue, raw)


@pytest.fixture
def parked_timers(monkeypatch: pytest.MonkeyPatch) -> Iterator[ParkedTimers]:
    import redis

    from reprise_server.shared import broker
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    queue = f"{settings.queue_prefix}.parked-timers"

    def send(run_id: str, token: int, **when: Any) -> None:
        broker.celery_app().send_task(broker.PROMOTE_RUN, args=[run_id, token], queue=queue, **when)

    monkeypatch.setattr(broker, "arm_timer", lambda run_id, token, eta: send(run_id, token, eta=eta))
    monkeypatch.setattr(
        broker, "arm_timer_in", lambda run_id, token, seconds: send(run_id, token, countdown=seconds)
    )
    monkeypatch.setattr(
        broker, "arm_timers", lambda timers: [send(r, t, eta=eta) for r, t, eta in timers]
    )
    client = redis.Redis.from_url(settings.redis_url)
    yield ParkedTimers(queue, client)
    client.delete(queue)
    client.close()


def held_timer_tokens(run_id: str, prefix: str | None = None) -> list[int]:
    """Tokens of the run's promotion timers delivered to a consumer of ``<prefix>.timers``
    (this session's prefix by default) and not acknowledged yet: the timers held in a
    process's memory."""
    import redis

    from reprise_server.shared.broker import UNACKED_KEY
    from reprise_server.shared.settings import get_settings

    settings = get_settings()
    timers_queue = f"{prefix or settings.queue_prefix}.timers"
    client = redis.Redis.from_url(settings.redis_url)
    try:
        tokens = []
        for raw in client.hvals(UNACKED_KEY):
            message, _exchange, routing_key = json.loads(raw)
            if routing_key != timers_queue:
                continue
            args = json.loads(base64.b64decode(message["body"]))[0]
            if args[0] == run_id:
                tokens.append(int(args[1]))
        return sorted(tokens)
    finally:
        client.close()


@dataclass
class TimerOutcomes:
    """What every ``reprise.promote_delayed_run`` the worker executed returned."""

    seen: list[tuple[str, int, bool]] = field(default_factory=list)
    # Timers a newer one for the same run superseded before their ETA (workers/held_timers.py).
    let_go: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, run_id: str) -> list[tuple[int, bool]]:
        with self.lock:
            return [(token, promoted) for rid, token, promoted in self.seen if rid == run_id]

    def let_go_of(self, run_id: str) -> list[int]:
        with self.lock:
            return [token for rid, token in self.let_go if rid == run_id]


@pytest.fixture
def timer_outcomes() -> Iterator[TimerOutcomes]:
    from celery.signals import task_postrun, task_revoked

    from reprise_server.shared.broker import PROMOTE_RUN

    outcomes = TimerOutcomes()

    def record(task: Any = None, args: Any = None, retval: Any = None, **_: Any) -> None:
        if task is not None and task.name == PROMOTE_RUN:
            with outcomes.lock:
                outcomes.seen.append((args[0], args[1], bool(retval)))

    def record_let_go(sender: Any = None, request: Any = None, **_: Any) -> None:
        if sender is not None and sender.name == PROMOTE_RUN and request is not None:
            with outcomes.lock:
                outcomes.let_go.append((request.args[0], request.args[1]))

    task_postrun.connect(record, weak=False)
    task_revoked.connect(record_let_go, weak=False)
    yield outcomes
    task_postrun.disconnect(record)
    task_revoked.disconnect(record_let_go)


def explain_analyze(statement: str, params: Any) -> str:
    """The executed plan (rolled back), without the planning section."""
    from reprise_server.shared.db import transaction

    with transaction() as session:
        plan = "\n".join(
            row[0]
            for row in session.connection().exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params
            )
        )
        session.rollback()
    return plan.split("Planning:")[0]


def buffers_read(plan: str) -> int:
    """The most buffers any node of ``plan`` touched."""
    return max((int(n) for n in re.findall(r"shared hit=(\d+)", plan)), default=0)


def insert_bulk_runs(project: ProjectKeys, count: int, status: str, ttl_from_now: str) -> None:
    """``count`` runs straight into the table (enough for the planner to prefer indexes)."""
    sql(
        "INSERT INTO runs (id, project_id, environment_id, task_identifier, status, "
        "payload_type, tags, max_attempts, priority, is_test, debug_mode, trigger_function, "
        "triggered_by, schedule_token, attempt_count, duration_ms, cost_in_cents, "
        "base_cost_in_cents, depth, lineage_depth, ttl_seconds, ttl_expires_at, delayed_until) "
        "SELECT 'run_bulk' || :status || g, :project, :env, 'test-echo', :status, "
        "'application/json', '{}', 3, 0, false, false, 'trigger', 'api', 1, 0, 0, 0, 0, 0, 0, "
        "600, now() + CAST(:ttl AS interval) + make_interval(secs => g), "
        "CASE WHEN :status = 'DELAYED' THEN now() + interval '1 day' + make_interval(secs => g) END "
        "FROM generate_series(1, :count) AS g",
        project=project.project_id, env=project.environment_ids["dev"], status=status,
        ttl=ttl_from_now, count=count,
    )
    sql("ANALYZE runs")


def seconds_from_now(seconds: float) -> datetime:
    return db_clock() + timedelta(seconds=seconds)
