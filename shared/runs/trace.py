"""A run's trace: its life as a tree of spans, built from what the run tables record.

The root span is the run (created → finished). Under it, in time order: the delay (created
→ due, for a delayed run), the queue wait (queued → first dequeued), each attempt, and the
backoff between one attempt's end and the next one's start (a retry's; an attempt that
resumed the run after a durable wait follows that wait, not a backoff, and says so in its
message). Under an attempt: the steps and waits of the run's durable record it did
(``run_steps``: a step from its start to its result, a wait from its start to what it
waited for being over), the checkpoints it saved (points: no duration), the child runs it
triggered (spans linking to the child, whose own trace holds its insides) and, as events,
the lines it logged (``run_logs``). Steps a replay reused from the original's record are
under the root.

A span still open (the run is executing, waiting or retrying) ends "now" (the database's
clock) and is partial. An attempt without ``completed_at`` in a finished run ends with the
run: a run canceled after 2.5 s of execution shows its attempt lasting 2.5 s, whatever
usage the worker recorded.

The wire shape is ``@trigger.dev/core``'s ``RetrieveRunTraceResponseBody`` (a nested tree)
and ``RetrieveRunTracePageResponseBody`` (the same spans flat, depth first, in pages).
Durations on the wire are nanoseconds, as Trigger.dev's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprise_server.shared.db import db_now
from reprise_server.shared.durable.models import RunStep
from reprise_server.shared.durations import iso
from reprise_server.shared.runlogs.models import RunLog
from reprise_server.shared.runlogs.reader import lines_of_run
from reprise_server.shared.runs import attempts_repository as attempts_repo
from reprise_server.shared.runs.models import Attempt, Checkpoint, Run
from reprise_server.shared.runs.states import FAILED_LIKE, FINAL_STATES, AttemptStatus, RunStatus

# The trace carries at most this many log lines as events (the first ones); the root span
# says ``logsTruncated`` when there were more (the logs endpoints page through them all).
TRACE_LOG_LIMIT = 2000
# Child runs shown (the first ones triggered), as the run object's related runs.
TRACE_CHILD_LIMIT = 100
# A page of the flat trace: the official SDK asks for 10 000 spans unless told.
MAX_PAGE_SIZE = 10_000

_ERROR_ATTEMPTS = frozenset({AttemptStatus.FAILED})


def _utc(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(value)


def wait_words(detail: dict[str, Any] | None) -> str:
    """What a recorded wait waits for, in words (a span's message, the run page)."""
    detail = detail or {}
    kind = detail.get("type")
    if kind == "datetime":
        return f"Wait until {_utc(detail.get('until', '?'))}"
    if kind == "run":
        runs = list(detail.get("runs") or [])
        if len(runs) == 1 and not detail.get("batch"):
            return f"Wait for child run {runs[0]}"
        return f"Wait for {len(runs)} child run{'s' if len(runs) != 1 else ''}"
    if kind == "token":
        deadline = f" (timeout {_utc(detail['deadline'])})" if detail.get("deadline") else ""
        return f"Wait for token {detail.get('token', '?')}{deadline}"
    return "Wait"


def resumed_after(attempts: Sequence[Attempt], steps: Sequence[RunStep]) -> dict[int, str]:
    """Each attempt that resumed the run after a durable wait (the one before it ended
    PAUSED at a wait), with that wait's name, by attempt number."""
    waits: dict[int, str] = {}
    for step in steps:
        if step.kind == "wait":
            waits[step.attempt_number] = step.name  # the last wait an attempt reached
    found = {}
    ordered = sorted(attempts, key=lambda a: a.number)
    for before, attempt in pairwise(ordered):
        if before.status is AttemptStatus.PAUSED:
            found[attempt.number] = waits.get(before.number, "a wait")
    return found


@dataclass
class SpanEvent:
    name: str
    time: datetime
    properties: dict[str, Any]


@dataclass
class Span:
    id: str
    run_id: str
    # run, delay, queue, attempt, backoff, step, wait, checkpoint, child
    kind: str
    message: str
    start: datetime
    # None: still open (``partial``), it lasts until now.
    end: datetime | None
    parent_id: str | None = None
    is_error: bool = False
    is_cancelled: bool = False
    attempt_number: int | None = None
    # A child span: the run it stands for (the dashboard links to it).
    linked_run_id: str | None = None
    task_slug: str | None = None
    queue_name: str | None = None
    machine: str | None = None
    worker_version: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    children: list[Span] = field(default_factory=list)
    # Log lines of this attempt (counted even when the events are not loaded).
    log_count: int = 0

    @property
    def is_partial(self) -> bool:
        return self.end is None

    @property
    def is_point(self) -> bool:
        return self.kind == "checkpoint"

    def finish(self, now: datetime) -> datetime:
        return self.end if self.end is not None else max(now, self.start)

    def duration_ms(self, now: datetime) -> float:
        return max(0.0, (self.finish(now) - self.start).total_seconds() * 1000)

    def add(self, child: Span) -> None:
        child.parent_id = self.id
        self.children.append(child)


@dataclass
class Trace:
    trace_id: str
    root: Span
    # The database's clock when it was read: the end of every open span.
    now: datetime
    logs_truncated: bool = False

    def walk(self) -> Iterator[tuple[Span, int]]:
        """Every span, depth first in time order, with its depth (the root's is 0)."""
        stack: list[tuple[Span, int]] = [(self.root, 0)]
        while stack:
            span, depth = stack.pop()
            yield span, depth
            stack.extend((child, depth + 1) for child in reversed(span.children))

    def execution_ms(self) -> float:
        """How long the run's attempts executed, summed (open ones until now)."""
        return sum(s.duration_ms(self.now) for s, _ in self.walk() if s.kind == "attempt")

    def end(self) -> datetime:
        return max(s.finish(self.now) for s, _ in self.walk())


# --- building ------------------------------------------------------------------------------


def _attempt_end(attempt: Attempt, run: Run) -> datetime | None:
    if attempt.completed_at is not None:
        return attempt.completed_at
    if run.status in FINAL_STATES or attempt.status in (
        AttemptStatus.COMPLETED, AttemptStatus.FAILED, AttemptStatus.CANCELED
    ):
        return run.finished_at or attempt.updated_at
    return None


def attempts_ms(run: Run, attempts: Sequence[Attempt], now: datetime) -> tuple[float, bool]:
    """How long ``attempts`` executed, summed as the trace's attempt spans are (an attempt
    stopped by a cancel counts until the cancel, an open one until ``now``), and whether one
    is still open (the figure is then a lower bound)."""
    total, running = 0.0, False
    for attempt in attempts:
        start = attempt.started_at or attempt.created_at
        end = _attempt_end(attempt, run)
        running = running or end is None
        finish = end if end is not None else max(now, start)
        total += max(0.0, (finish - start).total_seconds() * 1000)
    return total, running


def _log_event(line: RunLog) -> SpanEvent:
    props: dict[str, Any] = {"seq": line.seq, "level": line.level, "logger": line.logger,
                             "message": line.message}
    if line.attributes:
        props["attributes"] = line.attributes
    if line.exception:
        props["exception"] = line.exception
    return SpanEvent("log", line.logged_at, props)


def assemble(
    run: Run, attempts: Sequence[Attempt], checkpoints: Sequence[Checkpoint],
    children: Sequence[Run], logs: Sequence[RunLog], now: datetime, *,
    log_counts: dict[int, int] | None = None, logs_truncated: bool = False,
    steps: Sequence[RunStep] = (),
) -> Trace:
    """The trace of ``run`` from its rows (no database access: tests build it from rows)."""
    final = run.status in FINAL_STATES
    root = Span(
        id=run.id, run_id=run.id, kind="run", message=run.task_identifier,
        start=run.created_at, end=(run.finished_at or run.updated_at) if final else None,
        is_error=run.status in FAILED_LIKE, is_cancelled=run.status is RunStatus.CANCELED,
        task_slug=run.task_identifier, queue_name=run.queue or None, machine=run.machine,
        worker_version=run.version,
        properties={"status": run.status.value, "attemptCount": len(attempts),
                    "maxAttempts": run.max_attempts},
    )
    if run.resume_count:
        # Attempts that resumed after a durable wait: not counted against maxAttempts.
        root.properties["resumeCount"] = run.resume_count
    if run.error:
        root.properties["error"] = run.error
    if logs_truncated:
        root.properties["logsTruncated"] = True

    def closed(end: datetime | None) -> datetime | None:
        # A wait the run left without ending it (canceled, expired) ends with the run.
        return end if end is not None else (root.end if final else None)

    if run.delayed_until is not None:
        root.add(Span(id=f"{run.id}:delay", run_id=run.id, kind="delay", message="Delayed",
                      start=run.created_at, end=closed(run.queued_at),
                      properties={"delayedUntil": iso(run.delayed_until)}))
    if run.queued_at is not None:
        root.add(Span(id=f"{run.id}:queue", run_id=run.id, kind="queue",
                      message=f"Queued in {run.queue or 'default'}", start=run.queued_at,
                      end=closed(run.dequeued_at)))

    counts = dict(log_counts or {})
    if log_counts is None:
        for line in logs:
            counts[line.attempt_number] = counts.get(line.attempt_number, 0) + 1
    spans: dict[int, Span] = {}
    previous_end: datetime | None = None
    resumes = resumed_after(attempts, steps)
    for attempt in attempts:
        start = attempt.started_at or attempt.created_at
        resume = resumes.get(attempt.number)
        if previous_end is not None and start > previous_end and resume is None:
            root.add(Span(id=f"{run.id}:backoff:{attempt.number - 1}", run_id=run.id,
                          kind="backoff", message=f"Backoff before attempt {attempt.number}",
                          start=previous_end, end=start))
        message = f"Attempt {attempt.number}"
        if resume is not None:
            message += f" (resumed after {resume})"
        elif attempt.number > 1:
            message += " (retry)"
        span = Span(
            id=f"{run.id}:attempt:{attempt.number}", run_id=run.id, kind="attempt",
            message=message, start=start, end=_attempt_end(attempt, run),
            is_error=attempt.status in _ERROR_ATTEMPTS,
            is_cancelled=attempt.status is AttemptStatus.CANCELED,
            attempt_number=attempt.number, task_slug=run.task_identifier,
            log_count=counts.get(attempt.number, 0),
            properties={"status": attempt.status.value, "attemptNumber": attempt.number},
        )
        if resume is not None:
            span.properties["resumedAfter"] = resume
        elif attempt.number > 1:
            span.properties["retry"] = True
        if attempt.worker:
            span.properties["worker"] = attempt.worker
        if attempt.error:
            span.properties["error"] = attempt.error
        spans[attempt.number] = span
        root.add(span)
        previous_end = span.end
    if run.status is RunStatus.RETRYING and previous_end is not None:
        # Between a failed attempt and the next one, which has not started yet.
        number = len(attempts) + 1
        backoff = Span(id=f"{run.id}:backoff:{number - 1}", run_id=run.id, kind="backoff",
                       message=f"Backoff before attempt {number}", start=previous_end, end=None)
        if run.next_attempt_at is not None:
            backoff.properties["nextAttemptAt"] = iso(run.next_attempt_at)
        root.add(backoff)

    def owner(number: int | None, moment: datetime | None = None) -> Span:
        if number is not None and number in spans:
            return spans[number]
        if moment is not None:
            for span in spans.values():
                if span.start <= moment <= span.finish(now):
                    return span
        return root

    for step in steps:
        _add_step(run, step, owner, closed)
    for cp in checkpoints:
        owner(cp.attempt_number).add(Span(
            id=f"{run.id}:checkpoint:{cp.number}", run_id=run.id, kind="checkpoint",
            message=f"Checkpoint #{cp.number}", start=cp.created_at, end=cp.created_at,
            attempt_number=cp.attempt_number, properties={"checkpoint": cp.number},
        ))
    for child in children:
        child_final = child.status in FINAL_STATES
        owner(None, child.created_at).add(Span(
            id=child.id, run_id=child.id, kind="child", message=child.task_identifier,
            start=child.created_at,
            end=(child.finished_at or child.updated_at) if child_final else None,
            is_error=child.status in FAILED_LIKE,
            is_cancelled=child.status is RunStatus.CANCELED, linked_run_id=child.id,
            task_slug=child.task_identifier, queue_name=child.queue or None,
            worker_version=child.version, properties={"status": child.status.value},
        ))
    for line in logs:
        owner(line.attempt_number).events.append(_log_event(line))
    for span in [root, *spans.values()]:
        span.children.sort(key=lambda s: s.start)
    return Trace(run.root_run_id or run.id, root, now, logs_truncated)


def _add_step(run: Run, step: RunStep, owner: Any, closed: Any) -> None:
    """A recorded step or wait as a span under the attempt that did it (a step a replay
    reused from the original's record: under the root, as it ran in another run)."""
    copied = step.copied_from is not None
    props: dict[str, Any] = {"position": step.position, "name": step.name,
                             "status": step.status}
    if copied:
        props["copiedFrom"] = step.copied_from
    if step.error:
        props["error"] = step.error
    if step.kind == "wait":
        props["waitFor"] = {k: v for k, v in (step.detail or {}).items() if k != "waitpoints"}
        message = wait_words(step.detail)  # its name (wait, wait_for_token:…) is a property
    else:
        message = f"Step {step.name}"
    if copied:
        message += f" (reused from {step.copied_from})"
    start = step.created_at
    end = step.completed_at if not copied else step.created_at
    parent = owner(None) if copied else owner(step.attempt_number, start)
    parent.add(Span(
        id=f"{run.id}:{step.kind}:{step.position}", run_id=run.id, kind=step.kind,
        message=message, start=start, end=end if end is not None else closed(None),
        is_error=step.status == "FAILED" or (
            step.kind == "wait" and isinstance(step.output, dict)
            and step.output.get("ok") is False),
        attempt_number=None if copied else step.attempt_number,
        task_slug=run.task_identifier, properties=props,
    ))


def children_of(session: Session, run_id: str) -> list[Run]:
    return list(session.scalars(
        select(Run).where(Run.parent_run_id == run_id).order_by(Run.created_at)
        .limit(TRACE_CHILD_LIMIT)
    ))


def log_counts(session: Session, run_id: str) -> dict[int, int]:
    """How many lines each attempt of the run logged."""
    rows = session.execute(
        select(RunLog.attempt_number, func.count()).where(RunLog.run_id == run_id)
        .group_by(RunLog.attempt_number)
    )
    return {int(number): int(count) for number, count in rows}


def build_trace(
    session: Session, run: Run, *, with_logs: bool = True,
    attempts: Sequence[Attempt] | None = None, checkpoints: Sequence[Checkpoint] | None = None,
    steps: Sequence[RunStep] | None = None,
) -> Trace:
    """The trace of a run the caller may see. ``with_logs``: log lines as events on their
    attempts (else only counted: the dashboard's waterfall)."""
    if attempts is None:
        attempts = attempts_repo.attempts_of(session, [run.id])[run.id]
    if checkpoints is None:
        checkpoints = attempts_repo.checkpoints_of(session, run.id)
    kids = children_of(session, run.id)
    if steps is None:
        steps = list(session.scalars(
            select(RunStep).where(RunStep.run_id == run.id).order_by(RunStep.position)
        ))
    now = db_now(session)
    if with_logs:
        lines, truncated = lines_of_run(session, run.id, TRACE_LOG_LIMIT)
        return assemble(run, attempts, checkpoints, kids, lines, now, logs_truncated=truncated,
                        steps=steps)
    return assemble(run, attempts, checkpoints, kids, [], now,
                    log_counts=log_counts(session, run.id), steps=steps)


# --- the wire --------------------------------------------------------------------------


def _ns(span: Span, now: datetime) -> int:
    return round(span.duration_ms(now) * 1_000_000)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _properties(span: Span) -> dict[str, Any]:
    props = dict(span.properties)
    props["kind"] = span.kind
    if span.linked_run_id:
        props["linkedRunId"] = span.linked_run_id
    if span.kind == "attempt":
        props["logCount"] = span.log_count or len(span.events)
    return props


def span_to_wire(span: Span, now: datetime) -> dict[str, Any]:
    data = _compact({
        "message": span.message,
        "taskSlug": span.task_slug,
        "events": [{"name": e.name, "time": iso(e.time), "properties": e.properties}
                   for e in span.events],
        "startTime": iso(span.start),
        "duration": _ns(span, now),
        "isError": span.is_error,
        "isPartial": span.is_partial,
        "isCancelled": span.is_cancelled,
        "level": "TRACE",
        "workerVersion": span.worker_version,
        "queueName": span.queue_name,
        "machinePreset": span.machine,
        "properties": _properties(span),
    })
    return _compact({
        "id": span.id,
        "parentId": span.parent_id,
        "runId": span.run_id,
        "data": data,
        "children": [span_to_wire(child, now) for child in span.children],
    })


def trace_to_wire(trace: Trace) -> dict[str, Any]:
    """``RetrieveRunTraceResponseBody``: the whole tree."""
    return {"trace": {"traceId": trace.trace_id, "rootSpan": span_to_wire(trace.root, trace.now)}}


def trace_page_to_wire(trace: Trace, size: int, after: str | None) -> dict[str, Any]:
    """``RetrieveRunTracePageResponseBody``: the spans flat, depth first, ``size`` a page
    after the span id ``after`` (None: from the first); ``pagination.next`` is the last
    span's id while more follow. An unknown cursor starts past the end (an empty page)."""
    flat = [span for span, _ in trace.walk()]
    start = 0
    if after is not None:
        ids = [span.id for span in flat]
        start = ids.index(after) + 1 if after in ids else len(flat)
    page = flat[start:start + size]
    data = [_compact({
        "id": s.id, "parentId": s.parent_id, "runId": s.run_id, "message": s.message,
        "startTime": iso(s.start), "duration": _ns(s, trace.now), "isError": s.is_error,
        "isPartial": s.is_partial, "isCancelled": s.is_cancelled, "level": "TRACE",
        "attemptNumber": s.attempt_number,
    }) for s in page]
    failures = [{"spanId": s.id, "attemptNumber": s.attempt_number, "runId": s.run_id}
                for s in page if s.kind == "attempt" and s.is_error]
    pagination: dict[str, Any] = {}
    if start + size < len(flat) and page:
        pagination["next"] = page[-1].id
    return {"data": data, "attemptFailures": failures, "pagination": pagination}


def span_detail_to_wire(trace: Trace, span_id: str) -> dict[str, Any] | None:
    """``RetrieveSpanDetailResponseBody`` of one span (None if the trace has no such span):
    with its events and properties, and the child runs triggered under it."""
    for span, _ in trace.walk():
        if span.id != span_id:
            continue
        triggered = [{"runId": c.run_id, "taskIdentifier": c.message,
                      "status": c.properties.get("status", ""), "createdAt": iso(c.start)}
                     for c in span.children if c.kind == "child"]
        detail = _compact({
            "spanId": span.id, "runId": span.run_id, "message": span.message,
            "isError": span.is_error, "isPartial": span.is_partial,
            "isCancelled": span.is_cancelled, "level": "TRACE", "startTime": iso(span.start),
            "durationMs": span.duration_ms(trace.now), "properties": _properties(span),
            "events": [{"name": e.name, "time": iso(e.time), "properties": e.properties}
                       for e in span.events],
            "entityType": span.kind, "triggeredRuns": triggered or None,
        })
        detail["parentId"] = span.parent_id  # nullable, unlike the trace's
        return detail
    return None
