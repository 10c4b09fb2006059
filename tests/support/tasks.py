"""Tasks used by the test suite (loaded by the in-process worker)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from reprise import TaskContext, concurrency_limit, task

# Tests coordinate with running tasks through these events (keyed by run id or name),
# which forces interleavings instead of sleeping and hoping.
GATES: dict[str, threading.Event] = {}
SEEN: dict[str, list[Any]] = {}


def gate(name: str) -> threading.Event:
    return GATES.setdefault(name, threading.Event())


@task(id="test-echo", max_attempts=1)
def echo(payload: Any, ctx: TaskContext) -> Any:
    SEEN.setdefault(ctx.run.id, []).append(
        {"attempt": ctx.attempt.number, "is_replay": ctx.run.is_replay}
    )
    return {"payload": payload, "attempt": ctx.attempt.number, "isReplay": ctx.run.is_replay}


@task(id="test-fail-until", max_attempts=3)
def fail_until(payload: Any, ctx: TaskContext) -> Any:
    """Fails until attempt ``succeedOn`` (never, if absent)."""
    succeed_on = payload.get("succeedOn") if isinstance(payload, dict) else None
    if succeed_on is None or ctx.attempt.number < int(succeed_on):
        raise ValueError(f"failing attempt {ctx.attempt.number}")
    return {"attempt": ctx.attempt.number}


@task(id="test-block", max_attempts=1)
def block(payload: Any, ctx: TaskContext) -> Any:
    """Signals it started, then waits (in small steps) until released or interrupted."""
    name = payload.get("gate", ctx.run.id) if isinstance(payload, dict) else ctx.run.id
    gate(f"{name}:started").set()
    release = gate(f"{name}:release")
    deadline = time.monotonic() + float(payload.get("maxWait", 30) if isinstance(payload, dict) else 30)
    while not release.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"released": release.is_set()}


@task(id="test-checkpoints", max_attempts=1)
def checkpoints(payload: Any, ctx: TaskContext) -> Any:
    count = int(payload.get("count", 3)) if isinstance(payload, dict) else 3
    numbers = [ctx.checkpoint({"step": i, "payload": payload}) for i in range(1, count + 1)]
    return {"checkpoints": numbers}


@task(id="test-unstorable", max_attempts=1)
def unstorable(payload: Any, ctx: TaskContext) -> Any:
    """Returns (or, with ``checkpoint``, checkpoints) a NaN, which Postgres cannot store."""
    if isinstance(payload, dict) and payload.get("checkpoint"):
        ctx.checkpoint({"ratio": float("nan")})
    return {"rows": [{"ratio": float("nan")}]}


@task(id="test-large-output", max_attempts=1)
def large_output(payload: Any, ctx: TaskContext) -> Any:
    """Returns ``{"blob": "x" * bytes}``: outputs over the inline limit get a presigned URL."""
    size = int(payload.get("bytes", 0)) if isinstance(payload, dict) else 0
    return {"blob": "x" * size}


@task(id="test-ttl-default", max_attempts=1, ttl="1h")
def ttl_default(payload: Any, ctx: TaskContext) -> Any:
    """A task whose own default TTL (1h) applies when the trigger gives none."""
    return payload


@task(id="test-sleep", max_attempts=3)
def sleep_for(payload: Any, ctx: TaskContext) -> Any:
    """Takes ``seconds`` (default 0.2): long enough to be caught mid-run by a shutdown."""
    seconds = float(payload.get("seconds", 0.2)) if isinstance(payload, dict) else 0.2
    time.sleep(seconds)
    return {"slept": seconds, "attempt": ctx.attempt.number}


@task(id="test-wait-file", max_attempts=3)
def wait_for_file(payload: Any, ctx: TaskContext) -> Any:
    """Runs until the file ``path`` exists: a test decides when a run in flight may finish.
    Appends its attempt to ``path``.log first, so the test sees every execution."""
    path = Path(payload["path"])
    with Path(f"{path}.log").open("a") as log:
        log.write(f"{ctx.run.id} {ctx.attempt.number} {os.getpid()}\n")
    while not path.exists():
        time.sleep(0.05)
    return {"attempt": ctx.attempt.number}


# --- The dashboard's Queues page (tests/api/dashboard/test_queues.py,
# tests/api/test_dashboard_queues.py): a task holding its own limit and the named limit
# `dash-shared` (total 1), so a second run waits in the line while the first executes.
# Its runs wait on the gate named by their payload's "gate" (at most 60 s), so a test
# decides when the one holding the slot finishes.
DASH_SHARED = concurrency_limit("dash-shared", total=1)


@task(id="dash-limited", max_attempts=1, concurrency=[{"total": 3, "per_key": 2}, DASH_SHARED])
def dash_limited(payload: Any, ctx: TaskContext) -> Any:
    name = payload.get("gate") if isinstance(payload, dict) else None
    if name:
        gate(str(name)).wait(60)
    return {"run": ctx.run.id}


# --- Flow control: limited tasks for the queue and concurrency-limit API tests ------------
# Each project's version declares the limit `task/test-limited` (total 2, 1 per key), the
# named limit `test-shared` (total 3) and, through `test-limited-shared`, the custom queue
# `emails` (one the session's in-process worker serves).

SHARED_LIMIT = concurrency_limit("test-shared", total=3)


@task(id="test-limited", max_attempts=1, concurrency={"total": 2, "per_key": 1})
def limited(payload: Any, ctx: TaskContext) -> Any:
    """With ``{"hold": name}``, runs until the gate ``<name>:release`` opens (30 s at most)."""
    hold = payload.get("hold") if isinstance(payload, dict) else None
    if hold:
        release = gate(f"{hold}:release")
        deadline = time.monotonic() + 30
        while not release.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
    return payload


@task(id="test-limited-shared", max_attempts=1, concurrency=SHARED_LIMIT, queue="emails")
def limited_shared(payload: Any, ctx: TaskContext) -> Any:
    return payload


# --- The dashboard's Overview page and its error groups (tests/shared/test_overview.py,
# tests/api/dashboard/test_overview.py): a task that raises the built-in exception named
# by its payload's "error" (TimeoutError, ValueError or KeyError; ValueError otherwise)
# with its "message", on its one attempt, so its runs end FAILED with that error.
OV_ERRORS: dict[str, type[Exception]] = {
    "TimeoutError": TimeoutError, "ValueError": ValueError, "KeyError": KeyError,
}


@task(id="ov-raise", max_attempts=1)
def ov_raise(payload: Any, ctx: TaskContext) -> Any:
    kind = OV_ERRORS.get(str(payload.get("error")), ValueError)
    raise kind(str(payload.get("message", "")))


# --- Flow control: tasks holding concurrency limits (ids prefixed ``flow-``) ---------------
# tests/shared/flow and tests/workers/test_flow_control.py. Each writes an execution ledger
# (``flow_ledger``): an ``enter`` line when its function starts and an ``exit`` line when it
# returns, appended under an exclusive file lock, so the file's order is the order the
# executions really entered and left, across threads and processes. A test reads from it
# the most executions ever inside the function at once, overall and per concurrency key.

import fcntl

from reprise import concurrency_limit

FLOW_SHARED = concurrency_limit("flow-shared", total=2)


def flow_ledger(path: str, line: str) -> None:
    with Path(path).open("a") as ledger:
        fcntl.flock(ledger, fcntl.LOCK_EX)
        ledger.write(line + "\n")
        ledger.flush()
        fcntl.flock(ledger, fcntl.LOCK_UN)


def _flow_body(payload: Any, ctx: TaskContext) -> Any:
    """``ledger``: the ledger's path; ``seconds``: how long to stay inside (default 0.1);
    ``hold``: a path, stay inside until it exists (``maxWait`` at most, default 30 s);
    ``failUntil``: raise on attempts before it; ``key``: the run's concurrency key, for
    the ledger."""
    payload = payload if isinstance(payload, dict) else {}
    ledger = payload.get("ledger")
    key = payload.get("key", "")
    me = f"{ctx.run.id} {ctx.attempt.number} {key or '-'} {os.getpid()}"
    if ledger:
        flow_ledger(ledger, f"enter {me}")
    try:
        hold = payload.get("hold")
        if hold:
            deadline = time.monotonic() + float(payload.get("maxWait", 30))
            while not Path(hold).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            time.sleep(float(payload.get("seconds", 0.1)))
        fail_until = payload.get("failUntil")
        if fail_until is not None and ctx.attempt.number < int(fail_until):
            raise ValueError(f"failing attempt {ctx.attempt.number}")
        return {"attempt": ctx.attempt.number}
    finally:
        if ledger:
            flow_ledger(ledger, f"exit {me}")


flow_two = task(id="flow-two", max_attempts=3, concurrency={"total": 2})(_flow_body)
flow_one = task(id="flow-one", max_attempts=3, concurrency={"total": 1})(_flow_body)
flow_keyed = task(id="flow-keyed", max_attempts=3,
                  concurrency={"total": 3, "per_key": 1})(_flow_body)
flow_shared_a = task(id="flow-shared-a", max_attempts=3, concurrency=FLOW_SHARED)(_flow_body)
flow_shared_b = task(id="flow-shared-b", max_attempts=3, concurrency=FLOW_SHARED)(_flow_body)


@task(id="flow-wait", max_attempts=1, concurrency={"total": 1})
def flow_wait(payload: Any, ctx: TaskContext) -> Any:
    """Waits for the token its payload names (none: returns at once). A durable wait ends
    the execution, and the run gives its slot back until the wait is over."""
    token = payload.get("token") if isinstance(payload, dict) else None
    return {"data": ctx.wait_for_token(token) if token else None}
# --- end of the flow control tasks ---------------------------------------------------------


# --- A run's trace (tests/api/test_run_trace.py, tests/api/dashboard/test_run_page.py,
# tests/e2e/node/run_trace.mjs): a task failing its first two attempts (two backoff gaps in
# its trace), a parent saving a checkpoint and triggering a child, and a task waiting on
# the gate named by its payload's "gate" (at most 60 s) while a test writes its log lines,
# and one whose first attempt raises before its second waits on such a gate.
@task(id="trace-retried", max_attempts=3)
def trace_retried(payload: Any, ctx: TaskContext) -> Any:
    if ctx.attempt.number < 3:
        raise RuntimeError(f"trace attempt {ctx.attempt.number} fails")
    return {"attempt": ctx.attempt.number}


@task(id="trace-child", max_attempts=1)
def trace_child(payload: Any, ctx: TaskContext) -> Any:
    return {"child": ctx.run.id}


@task(id="trace-parent", max_attempts=1)
def trace_parent(payload: Any, ctx: TaskContext) -> Any:
    ctx.checkpoint({"before": "child"})
    child = ctx.trigger("trace-child", {"from": ctx.run.id})
    return {"child": child}


@task(id="trace-gated", max_attempts=1)
def trace_gated(payload: Any, ctx: TaskContext) -> Any:
    name = payload.get("gate") if isinstance(payload, dict) else None
    if name:
        gate(f"{name}:started").set()
        gate(str(name)).wait(60)
    return {"run": ctx.run.id}


@task(id="trace-fails-then-gated", max_attempts=2)
def trace_fails_then_gated(payload: Any, ctx: TaskContext) -> Any:
    """Attempt 1 logs and raises; attempt 2 logs, then waits on the payload's gate."""
    ctx.logger.warning("attempt %d starts", ctx.attempt.number)
    if ctx.attempt.number == 1:
        raise LookupError("no such invoice")
    return trace_gated(payload, ctx)


# --- Run logs (tests/workers/test_run_logs.py, tests/reprise/test_run_logs.py,
# tests/e2e/test_official_sdk_run_events.py): tasks that log through several loggers and
# levels, print, write to stderr, log an exception, log from an `async def` task and from
# threads they start, log on each of two attempts, log many lines (the cap), log nothing,
# and log then wait for a file (a kill mid-run, a follow).
# Their loggers are set to DEBUG so every level they use gets through.
_logs_app = logging.getLogger("logs.app")
_logs_app.setLevel(logging.DEBUG)
_logs_db = logging.getLogger("logs.db")
_logs_db.setLevel(logging.INFO)


@task(id="logs-mixed", max_attempts=1)
def logs_mixed(payload: Any, ctx: TaskContext) -> Any:
    _logs_app.debug("debug %s", "detail")
    _logs_app.info("starting", extra={"order": 42, "items": ["a", "b"], "when": time})
    _logs_db.debug("below the db logger's level: not captured")
    _logs_db.warning("slow query took %dms", 1500)
    print("printed", "to stdout")
    print("no newline yet", end="")
    print(" ...now")
    sys.stderr.write("to stderr\n")
    ctx.logger.setLevel(logging.DEBUG)
    ctx.logger.info("from ctx.logger")
    try:
        raise ValueError("boom in the task")
    except ValueError:
        _logs_app.exception("caught it")
    _logs_app.critical("the end")
    return {"ok": True}


@task(id="logs-async", max_attempts=1)
async def logs_async(payload: Any, ctx: TaskContext) -> Any:
    _logs_app.info("async before await")
    await asyncio.sleep(0.01)

    async def child(n: int) -> None:
        _logs_app.info("async child %d", n)

    await asyncio.gather(child(1), child(2))
    await asyncio.to_thread(_logs_app.info, "from to_thread")
    print("async print")
    return {"ok": True}


@task(id="logs-thread", max_attempts=1)
def logs_thread(payload: Any, ctx: TaskContext) -> Any:
    def work() -> None:
        _logs_app.info("from my thread")
        print("thread print")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda n: _logs_app.info("pool item %d", n), range(3)))
    return {"ok": True}


@task(id="logs-many", max_attempts=1)
def logs_many(payload: Any, ctx: TaskContext) -> Any:
    count = int(payload.get("count", 100)) if isinstance(payload, dict) else 100
    for n in range(count):
        _logs_app.info("line %d", n)
    return {"logged": count}


@task(id="logs-fail-once", max_attempts=2)
def logs_fail_once(payload: Any, ctx: TaskContext) -> Any:
    _logs_app.info("attempt %d starts", ctx.attempt.number)
    if ctx.attempt.number == 1:
        raise ValueError("the first attempt fails")
    return {"attempt": ctx.attempt.number}


@task(id="logs-none", max_attempts=1)
def logs_none(payload: Any, ctx: TaskContext) -> Any:
    return None


@task(id="logs-then-wait", max_attempts=3)
def logs_then_wait(payload: Any, ctx: TaskContext) -> Any:
    """Logs ``count`` lines, then waits until the file ``path`` exists (a test kills the
    worker meanwhile, once it has seen the lines in the database)."""
    for n in range(int(payload.get("count", 5))):
        _logs_app.info("before the wait %d", n)
    path = Path(payload["path"])
    while not path.exists():
        time.sleep(0.05)
    _logs_app.info("after the wait")
    return {"attempt": ctx.attempt.number}


# --- Durable steps and waits (ids prefixed ``durable-``) -----------------------------------
# tests/workers/test_durable.py. Each step appends ``<name> <run id> <attempt>`` to the
# payload's ``ledger`` (flow_ledger's locked append), so a test counts how often a step's
# function really ran, across executions, retries, processes and kills.

from reprise.errors import ChildRunFailed, WaitTimeoutError


def _durable_mark(payload: dict[str, Any], ctx: TaskContext, name: str) -> str:
    if payload.get("ledger"):
        flow_ledger(payload["ledger"], f"{name} {ctx.run.id} {ctx.attempt.number}")
    return name


@task(id="durable-steps", max_attempts=1)
def durable_steps(payload: Any, ctx: TaskContext) -> Any:
    """Step a, a wait of ``wait`` seconds, step b; returns both results and how many times
    the run was resumed."""
    a = ctx.step("a", _durable_mark, payload, ctx, "a")
    ctx.wait_for(payload.get("wait", 1))
    b = ctx.step("b", _durable_mark, payload, ctx, "b")
    return {"a": a, "b": b, "resumes": ctx.run.resume_count,
            "fromStep": ctx.run.resumed_from_step}


@task(id="durable-retry", max_attempts=3)
def durable_retry(payload: Any, ctx: TaskContext) -> Any:
    """A step that charges once, then a failure on the first attempt: the retry answers
    the step from the record."""
    charge = ctx.step("charge", _durable_mark, payload, ctx, "charge")
    if ctx.attempt.number == 1:
        raise RuntimeError("fails after the step, once")
    return {"charge": charge, "attempt": ctx.attempt.number}


@task(id="durable-crash", max_attempts=3)
def durable_crash(payload: Any, ctx: TaskContext) -> Any:
    """Step a, then step b kills its own process the first time (``marker`` missing)."""
    ctx.step("a", _durable_mark, payload, ctx, "a")

    def b() -> str:
        _durable_mark(payload, ctx, "b")
        marker = Path(payload["marker"])
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), 9)
        return "b"

    return {"b": ctx.step("b", b)}


@task(id="durable-nondet", max_attempts=3)
def durable_nondet(payload: Any, ctx: TaskContext) -> Any:
    """Chooses its first step from a file that changes between executions (what a task
    must never do): the resume finds another step than the record."""
    name = "first" if not Path(payload["marker"]).exists() else "changed"
    Path(payload["marker"]).touch()
    ctx.step(name, lambda: 1)
    ctx.wait_for(0.5)
    return "unreachable"


@task(id="durable-child", max_attempts=1)
def durable_child(payload: Any, ctx: TaskContext) -> Any:
    if payload.get("fail"):
        raise ValueError(f"child {payload.get('n')} fails")
    time.sleep(float(payload.get("seconds", 0)))
    return {"n": payload.get("n"), "double": 2 * int(payload.get("n", 0))}


@task(id="durable-parent", max_attempts=1)
def durable_parent(payload: Any, ctx: TaskContext) -> Any:
    """trigger_and_wait one child; a failed child's error is caught and returned."""
    before = ctx.step("before", _durable_mark, payload, ctx, "before")
    try:
        out = ctx.trigger_and_wait("durable-child", payload.get("child", {}))
    except ChildRunFailed as exc:
        out = {"failed": exc.status, "error": exc.error.get("message")}
    return {"before": before, "child": out}


@task(id="durable-batch", max_attempts=1)
def durable_batch(payload: Any, ctx: TaskContext) -> Any:
    results = ctx.batch_trigger_and_wait(
        [("durable-child", child) for child in payload.get("children", [])]
    )
    return [r if not isinstance(r, Exception) else {"failed": r.status} for r in results]


@task(id="durable-token", max_attempts=1)
def durable_token(payload: Any, ctx: TaskContext) -> Any:
    try:
        data = ctx.wait_for_token(payload["token"], timeout=payload.get("timeout"))
    except WaitTimeoutError:
        return {"timedOut": True}
    return {"data": data}


@task(id="durable-many-steps", max_attempts=1)
def durable_many_steps(payload: Any, ctx: TaskContext) -> Any:
    total = 0
    for i in range(int(payload.get("steps", 100))):
        total += ctx.step("add", lambda i=i: i)
    if payload.get("wait"):
        ctx.wait_for(payload["wait"])
    return {"total": total}


@task(id="durable-checkpointed", max_attempts=1)
def durable_checkpointed(payload: Any, ctx: TaskContext) -> Any:
    """Saves a checkpoint per row it imports; says where it started from."""
    start = payload.get("done", 0) if ctx.run.resumed_from_checkpoint else 0
    rows = (ctx.run.original_payload or payload).get("rows", 3)
    for done in range(start + 1, rows + 1):
        ctx.checkpoint({"done": done})
    return {"start": start, "checkpoint": ctx.run.resumed_from_checkpoint,
            "original": ctx.run.original_payload}


@task(id="durable-big-step", max_attempts=1)
def durable_big_step(payload: Any, ctx: TaskContext) -> Any:
    """A step whose result (about 200 KB) is kept as a packet, read back after a wait."""
    rows = ctx.step("rows", lambda: [{"i": i, "text": "x" * 20} for i in range(6000)])
    ctx.wait_for(0.2)
    return {"rows": len(rows), "last": rows[-1]}


@task(id="durable-grandparent", max_attempts=1)
def durable_grandparent(payload: Any, ctx: TaskContext) -> Any:
    """Waits for a child that waits for a token."""
    return ctx.trigger_and_wait("durable-token", {"token": payload["token"]})
# --- end of the durable tasks --------------------------------------------------------------
