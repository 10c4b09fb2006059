"""Faults injected into a private live stack, and what each one cost
(docs/architecture.md#faults-cost-their-length).

A :class:`Stack` is embedded Postgres and Redis plus ``reprise api``, ``worker``,
``control`` and ``beat`` as real processes with the shipped settings, running the task of
:mod:`tests.support.chaos_tasks`. Each scenario puts it under load, injects its fault,
waits for every accepted run to finish and returns a :class:`Result`: runs accepted (2xx),
lost (never finished), re-executed (ran their function more than once) and how long
recovery took. ``tests/workers/test_faults.py`` asserts on them; ``bench/chaos.py`` prints
(and records) them.

* ``postgres-restart`` — Postgres stopped for 10 s while runs are triggered and executed;
  recovery: from Postgres back up to the last accepted run finished.
* ``kill-worker`` — ``kill -9`` to a worker's whole process group mid-run, a second
  worker running; recovery: from the kill to the killed run's next attempt starting. The
  run it was executing is re-executed by design (its attempt was lost with the process).
* ``sigterm-worker-group`` — SIGTERM to a prefork worker's process group mid-run (what
  systemd and ``kill -- -PGID`` do); nothing may be cut or re-executed.
* ``redis-flushall`` — ``FLUSHALL`` with runs queued, delayed and replayed; recovery: from
  the flush to the last of them finished.
* ``flushall-busy-queue`` — ``FLUSHALL`` while a producer keeps the run queue from ever
  draining (it triggers whenever fewer than 20 messages wait); recovery: from the flush to
  the last run whose message was lost finished, the producer still running (given up
  after 60 s: then the producer stops and the figure says so).
* ``kill-worker-backlog`` — ``kill -9`` to a worker running 8 runs (its process group and
  pool children) while a producer keeps a backlog of about 20 s for the surviving worker;
  recovery: from the kill to the last killed run's next attempt starting.
* ``durable-waits`` — runs waiting 5 s between two durable steps, then, while they wait:
  ``kill -9`` to the worker, ``FLUSHALL`` (the timers the control process held are gone
  with its restart, killed too), Postgres stopped for 10 s; a new worker and control
  process come up with Postgres. Recovery: from Postgres back up to the last run
  finished; ``re-executed`` counts step functions that ran more than once.

The last two also report the recovery messages the sweeps published per recovered run
(``redispatched`` in the control process's log).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

OUTAGE_SECONDS = 10.0


@dataclass
class Result:
    scenario: str
    accepted: int
    lost: int
    reexecuted: int
    recovery_seconds: float
    note: str = ""

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.accepted} | {self.lost} | {self.reexecuted} | "
            f"{self.recovery_seconds:.1f} | {self.note} |"
        )


HEADER = (
    "| scenario | accepted | lost | re-executed | recovery s | note |\n"
    "|---|---:|---:|---:|---:|---|"
)


@dataclass
class Stack:
    """A private Reprise stack; processes are added with :meth:`process`."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    postgres: Any = None
    redis: Any = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = 0
    key: str = ""

    @property
    def db_url(self) -> str:
        return str(self.env["REPRISE_DATABASE_URL"])

    def start_servers(self) -> None:
        from reprise_server.workers.devstack import EmbeddedPostgres, EmbeddedRedis, free_port

        # A fixed port, so a restarted Postgres comes back where the processes look.
        self.postgres = EmbeddedPostgres(self.root / "pg", port=free_port())
        self.redis = EmbeddedRedis(self.root / "redis")
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(self.root)),
            # ROOT/server first: the processes run this checkout's server, whichever one
            # the virtualenv's editable install points at.
            "PYTHONPATH": os.pathsep.join([str(ROOT / "server"), str(ROOT)]),
            "REPRISE_MODE": "dev",
            "REPRISE_DATABASE_URL": self.postgres.start(),
            "REPRISE_REDIS_URL": self.redis.start(),
            "REPRISE_QUEUE_PREFIX": f"chaos-{secrets.token_hex(3)}",
            "REPRISE_TASK_MODULES": "tests.support.chaos_tasks",
            "REPRISE_WORKER_VERSION": "chaos.1",
            "REPRISE_LOG_FORMAT": "text",
            "REPRISE_LIVENESS_DIR": str(self.root),
        }
        self.cli("migrate")
        self.key = self.cli("keys", "create", "--env", "dev").strip().splitlines()[-1]

    def cli(self, *argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "reprise.cli", *argv], cwd=ROOT, env=self.env,
            capture_output=True, text=True, timeout=120, check=False,
        )
        if done.returncode:
            raise SystemExit(f"reprise {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def process(self, name: str, *argv: str, own_group: bool = False) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        child = subprocess.Popen(
            [sys.executable, "-m", "reprise.cli", *argv], cwd=ROOT, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, process_group=0 if own_group else None,
        )
        self.children[name] = child
        return child

    def log(self, name: str, lines: int = 40) -> str:
        text = (self.root / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def start_api(self) -> None:
        from reprise_server.workers.devstack import free_port

        self.api_port = free_port()
        self.process("api", "api", "--port", str(self.api_port))
        wait_until(lambda: self._get("/healthz") == 200, 60, "the api")

    def start_control(self) -> None:
        self.process("control", "control")
        self.process("beat", "beat", "--schedule", str(self.root / "beat-schedule"))

    def start_worker(self, name: str, *, own_group: bool = False, slots: int = 4) -> None:
        self.process(
            name, "worker", "--pool", "prefork", "--concurrency", str(slots),
            "--hostname", f"{name}@%h", own_group=own_group,
        )

    def _get(self, path: str) -> int:
        import httpx

        try:
            return httpx.get(f"http://127.0.0.1:{self.api_port}{path}", timeout=2).status_code
        except httpx.HTTPError:
            return 0

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """The response's JSON for a 2xx, None for anything else (not accepted)."""
        import httpx

        try:
            response = httpx.post(
                f"http://127.0.0.1:{self.api_port}{path}", json=body,
                headers={"Authorization": f"Bearer {self.key}"}, timeout=10,
            )
        except httpx.HTTPError:
            return None
        return response.json() if response.is_success else None

    def trigger(self, seconds: float, **options: Any) -> str | None:
        body = self.post(
            "/api/v1/tasks/chaos-sleep/trigger",
            {"payload": {"seconds": seconds}, "options": options},
        )
        return str(body["id"]) if body else None

    def trigger_many(self, count: int, seconds: float, **options: Any) -> list[str]:
        """The ids of the ``count`` triggers that were accepted."""
        return [rid for rid in (self.trigger(seconds, **options) for _ in range(count)) if rid]

    def wait_registered(self) -> None:
        """Until a worker has registered the task (a trigger before that is a 404)."""
        wait_until(lambda: self.trigger(0.01) is not None, 60, "a worker to register its tasks")

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        url = self.db_url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            return list(conn.execute(sql, params).fetchall())

    def runs(self, ids: list[str]) -> dict[str, tuple[str, int, Any]]:
        """``id -> (status, attempts started, finished_at)``."""
        rows = self.query(
            "SELECT r.id, r.status, count(a.*), r.finished_at FROM runs r "
            "LEFT JOIN attempts a ON a.run_id = r.id WHERE r.id = ANY(%(ids)s) "
            "GROUP BY r.id", ids=ids,
        )
        return {row[0]: (row[1], int(row[2]), row[3]) for row in rows}

    def wait_all_finished(self, ids: list[str], timeout: float) -> dict[str, tuple[str, int, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                runs = self.runs(ids)
            except Exception:
                runs = {}
            if len(runs) == len(ids) and all(r[0] == "COMPLETED" for r in runs.values()):
                return runs
            if time.monotonic() > deadline:
                return runs
            time.sleep(0.2)

    def executing(self) -> list[str]:
        return [r[0] for r in self.query("SELECT id FROM runs WHERE status = 'EXECUTING'")]

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                with _quiet():
                    os.killpg(child.pid, signal.SIGKILL) if _own_group(child) else child.kill()
        for child in self.children.values():
            with _quiet():
                child.wait(10)
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def _own_group(child: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(child.pid) == child.pid
    except ProcessLookupError:
        return False


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except (ProcessLookupError, subprocess.TimeoutExpired, OSError):
        pass


def wait_until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):  # a store still down: look again
            if probe():
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def stack() -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="reprise-chaos-"))
    running = Stack(root)
    try:
        running.start_servers()
        running.start_api()
        yield running
    finally:
        running.stop()
        shutil.rmtree(root, ignore_errors=True)


def _summary(scenario: str, ids: list[str], runs: dict[str, tuple[str, int, Any]],
             recovery: float, note: str, expected_reruns: int = 0) -> Result:
    lost = sum(1 for i in ids if runs.get(i, ("",))[0] != "COMPLETED")
    reexecuted = sum(1 for i in ids if i in runs and runs[i][1] > 1)
    if expected_reruns:
        note = f"{note}; {expected_reruns} run(s) lost their attempt with the killed process"
    return Result(scenario, len(ids), lost, reexecuted, recovery, note)


def postgres_restart(s: Stack) -> Result:
    s.start_worker("worker")
    s.start_control()
    s.wait_registered()
    accepted: list[str] = []
    stop = threading.Event()

    def load() -> None:  # ~20 triggers/s all along, the outage included
        while not stop.is_set():
            run_id = s.trigger(0.2)
            if run_id:
                accepted.append(run_id)
            time.sleep(0.05)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    time.sleep(3)
    s.postgres.stop()
    time.sleep(OUTAGE_SECONDS)
    s.postgres.start()
    back = time.monotonic()
    time.sleep(3)
    stop.set()
    loader.join()
    runs = s.wait_all_finished(accepted, 120)
    last = max((r[2] for r in runs.values() if r[2] is not None), default=None)
    [(db_now,)] = s.query("SELECT now()")
    recovery = time.monotonic() - back - (db_now - last).total_seconds() if last else 0.0
    return _summary("postgres-restart", accepted, runs, recovery,
                    f"Postgres down {OUTAGE_SECONDS:.0f} s under ~20 triggers/s")


def kill_worker(s: Stack) -> Result:
    s.start_control()
    s.start_worker("doomed", own_group=True, slots=1)
    s.wait_registered()
    wait_until(lambda: not s.executing(), 30, "the registration probe to finish")
    ids = s.trigger_many(6, 3)
    wait_until(lambda: bool(s.executing()), 60, "a run executing")
    [victim] = s.executing()
    os.killpg(s.children["doomed"].pid, signal.SIGKILL)
    [(killed_at,)] = s.query("SELECT now()")
    s.start_worker("survivor", slots=2)
    runs = s.wait_all_finished(ids, 120)
    [(restarted,)] = s.query(
        "SELECT max(started_at) FROM attempts WHERE run_id = %(id)s", id=victim
    )
    return _summary("kill-worker", ids, runs, (restarted - killed_at).total_seconds(),
                    "kill -9 to the worker's process group mid-run", expected_reruns=1)


def sigterm_worker_group(s: Stack) -> Result:
    s.start_control()
    s.start_worker("stopping", own_group=True, slots=2)
    s.wait_registered()
    wait_until(lambda: not s.executing(), 30, "the registration probe to finish")
    ids = s.trigger_many(6, 2)
    wait_until(lambda: len(s.executing()) == 2, 60, "two runs executing")
    began = time.monotonic()
    os.killpg(s.children["stopping"].pid, signal.SIGTERM)
    s.children["stopping"].wait(60)
    s.start_worker("next", slots=2)
    runs = s.wait_all_finished(ids, 120)
    cut = "exited with signal" in s.log("stopping", 400)
    return _summary("sigterm-worker-group", ids, runs, time.monotonic() - began,
                    "warm shutdown; pool children cut: " + ("yes" if cut else "no"))


def redis_flushall(s: Stack) -> Result:
    import redis

    s.start_control()
    s.start_worker("first")  # registers the task, then leaves: the runs below wait in Redis
    s.wait_registered()
    s.children["first"].send_signal(signal.SIGTERM)
    s.children["first"].wait(60)
    ids = s.trigger_many(20, 0.1)
    ids += s.trigger_many(10, 0.1, delay="3s")
    for original in ids[:10]:
        replayed = s.post(f"/api/v1/runs/{original}/replay")
        if replayed:
            ids.append(str(replayed["id"]))
    redis.Redis.from_url(s.env["REPRISE_REDIS_URL"]).flushall()
    flushed = time.monotonic()
    s.start_worker("worker")
    runs = s.wait_all_finished(ids, 180)
    return _summary("redis-flushall", ids, runs, time.monotonic() - flushed,
                    "queued, delayed and replayed runs; lost messages wait for the sweeps")


def _keep_queue_busy(s: Stack, depth: int, seconds: float, accepted: list[str],
                     stop: threading.Event, lengths: list[int]) -> threading.Thread:
    """A producer that triggers a run whenever fewer than ``depth`` messages wait in the
    run queue, recording each length it saw."""
    import redis

    client = redis.Redis.from_url(s.env["REPRISE_REDIS_URL"])
    name = f"{s.env['REPRISE_QUEUE_PREFIX']}.runs"

    def produce() -> None:
        while not stop.is_set():
            length = int(client.llen(name))  # type: ignore[arg-type]
            lengths.append(length)
            if length < depth:
                run_id = s.trigger(seconds)
                if run_id:
                    accepted.append(run_id)
            else:
                time.sleep(0.02)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    return producer


def _recovery_messages(s: Stack) -> int:
    """Messages the recovery sweep published (its ``redispatched`` counts)."""
    import re

    text = (s.root / "control.log").read_text(errors="replace")
    return sum(int(n) for n in re.findall(r"'redispatched': (\d+)", text))


def _finished(s: Stack, ids: list[str]) -> bool:
    runs = s.runs(ids)
    return len(runs) == len(ids) and all(r[0] == "COMPLETED" for r in runs.values())


def flushall_busy_queue(s: Stack) -> Result:
    import redis

    s.start_control()
    s.start_worker("worker", slots=2)
    s.wait_registered()
    accepted: list[str] = []
    lengths: list[int] = []
    stop = threading.Event()
    producer = _keep_queue_busy(s, 20, 0.5, accepted, stop, lengths)
    time.sleep(5)
    lost = [r[0] for r in s.query("SELECT id FROM runs WHERE status = 'QUEUED'")]
    redis.Redis.from_url(s.env["REPRISE_REDIS_URL"]).flushall()
    flushed = time.monotonic()
    seen_from = len(lengths)
    recovered_busy = True
    deadline = flushed + 60
    while not _finished(s, lost):
        if time.monotonic() > deadline:
            recovered_busy = False
            break
        time.sleep(0.1)
    drained = min(lengths[seen_from + 20:], default=0) == 0  # past the producer's refill
    stop.set()
    producer.join()
    runs = s.wait_all_finished(lost, 120)
    recovery = time.monotonic() - flushed
    messages = _recovery_messages(s)
    result = _summary("flushall-busy-queue", lost, runs, recovery,
                      f"{messages / max(len(lost), 1):.2f} recovery messages per lost run; "
                      f"queue drained after the flush: {'yes' if drained else 'no'}; "
                      + ("recovered while the producer ran" if recovered_busy
                         else "not recovered in 60 s of traffic: only after it stopped"))
    everything = s.wait_all_finished(accepted, 120)
    result.lost += sum(1 for i in accepted if everything.get(i, ("",))[0] != "COMPLETED")
    return result


def kill_worker_backlog(s: Stack) -> Result:
    s.start_control()
    s.start_worker("doomed", own_group=True, slots=8)
    s.wait_registered()
    wait_until(lambda: not s.executing(), 30, "the registration probe to finish")
    victims = s.trigger_many(8, 6.0)
    wait_until(lambda: len(s.executing()) == 8, 60, "the doomed worker running 8 runs")
    s.start_worker("survivor", slots=2)
    accepted: list[str] = []
    lengths: list[int] = []
    stop = threading.Event()
    # About 20 s of backlog for the survivor (40 runs of 1 s on 2 slots).
    producer = _keep_queue_busy(s, 40, 1.0, accepted, stop, lengths)
    wait_until(lambda: bool(lengths) and lengths[-1] >= 30, 60, "a backlog")
    holders = {row[0] for row in s.query(
        "SELECT locked_by FROM runs WHERE id = ANY(%(ids)s)", ids=victims)}
    os.killpg(s.children["doomed"].pid, signal.SIGKILL)
    for holder in holders:  # the pool children, out of the worker's process group
        with _quiet():
            os.kill(int(holder.rsplit(":", 1)[1]), signal.SIGKILL)
    [(killed_at,)] = s.query("SELECT now()")
    wait_until(lambda: _finished(s, victims), 240, "the killed runs to finish")
    stop.set()
    producer.join()
    runs = s.wait_all_finished(victims, 120)
    restarts = [row[0] for row in s.query(
        "SELECT max(started_at) FROM attempts WHERE run_id = ANY(%(ids)s) GROUP BY run_id",
        ids=victims)]
    delays = sorted((at - killed_at).total_seconds() for at in restarts)
    messages = _recovery_messages(s)
    result = _summary(
        "kill-worker-backlog", victims, runs, delays[-1] if delays else 0.0,
        f"{messages / len(victims):.2f} recovery messages per killed run; next attempt "
        f"{delays[0]:.1f}-{delays[-1]:.1f} s after the kill, behind a ~20 s backlog",
        expected_reruns=len(victims),
    )
    everything = s.wait_all_finished(accepted, 180)
    result.lost += sum(1 for i in accepted if everything.get(i, ("",))[0] != "COMPLETED")
    return result


def durable_waits(s: Stack) -> Result:
    import redis

    s.start_control()
    s.start_worker("worker", own_group=True, slots=2)
    s.wait_registered()
    ledger = s.root / "ledger"
    ids = [
        str(body["id"]) for body in (
            s.post("/api/v1/tasks/chaos-durable/trigger",
                   {"payload": {"ledger": str(ledger), "wait": 5}})
            for _ in range(10)
        ) if body
    ]
    wait_until(lambda: {r[0] for r in s.runs(ids).values()} == {"WAITING"}, 60,
               "every run waiting")
    for name in ("worker", "control", "beat"):
        child = s.children[name]
        with _quiet():
            os.killpg(child.pid, signal.SIGKILL) if _own_group(child) else child.kill()
            child.wait(10)
    redis.Redis.from_url(s.env["REPRISE_REDIS_URL"]).flushall()
    s.postgres.stop()
    time.sleep(OUTAGE_SECONDS)
    s.postgres.start()
    back = time.monotonic()
    s.start_control()
    s.start_worker("second", slots=2)
    runs = s.wait_all_finished(ids, 120)
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    reran = len(lines) - len(set(lines))
    last = max((r[2] for r in runs.values() if r[2] is not None), default=None)
    [(db_now,)] = s.query("SELECT now()")
    recovery = time.monotonic() - back - (db_now - last).total_seconds() if last else 0.0
    lost = sum(1 for i in ids if runs.get(i, ("",))[0] != "COMPLETED")
    return Result("durable-waits", len(ids), lost, reran, recovery,
                  "10 runs waiting 5 s; kill -9 of every process, FLUSHALL, Postgres down "
                  f"{OUTAGE_SECONDS:.0f} s")


SCENARIOS: dict[str, Callable[[Stack], Result]] = {
    "postgres-restart": postgres_restart,
    "kill-worker": kill_worker,
    "sigterm-worker-group": sigterm_worker_group,
    "redis-flushall": redis_flushall,
    "flushall-busy-queue": flushall_busy_queue,
    "kill-worker-backlog": kill_worker_backlog,
    "durable-waits": durable_waits,
}


def run_scenario(name: str) -> Result:
    with stack() as s:
        return SCENARIOS[name](s)
