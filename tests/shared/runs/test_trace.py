"""A run's trace assembled from its rows (no database): durations are the timestamps'
(a canceled run's attempt lasts until the cancel), open spans end now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reprise_server.shared.durable.models import RunStep
from reprise_server.shared.runs.models import Attempt, Checkpoint, Run
from reprise_server.shared.runs.states import AttemptStatus, RunStatus
from reprise_server.shared.runs.trace import assemble, trace_page_to_wire, trace_to_wire

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _run(status: RunStatus, **fields: object) -> Run:
    values: dict[str, object] = {
        "id": "run_trace0000000000000000001", "task_identifier": "t", "status": status,
        "created_at": _at(0), "updated_at": _at(0), "queued_at": _at(0), "dequeued_at": _at(1),
        "max_attempts": 3, "tags": [], "root_run_id": None, "queue": None, "machine": None,
        "version": "v1", "error": None, "delayed_until": None, "next_attempt_at": None,
        "finished_at": None, "duration_ms": 0,
    }
    values.update(fields)
    return Run(**values)


def _attempt(number: int, status: AttemptStatus, started: float,
             completed: float | None) -> Attempt:
    return Attempt(id=f"att_{number}", run_id="run_trace0000000000000000001", number=number,
                   status=status, started_at=_at(started), created_at=_at(started),
                   updated_at=_at(completed if completed is not None else started),
                   completed_at=_at(completed) if completed is not None else None,
                   error=None, worker="w1")


def test_a_run_canceled_after_2_5_s_of_execution_shows_its_attempt_lasting_2_5_s() -> None:
    run = _run(RunStatus.CANCELED, finished_at=_at(3.5), started_at=_at(1))
    attempt = _attempt(1, AttemptStatus.CANCELED, 1, 3.5)

    trace = assemble(run, [attempt], [], [], [], now=_at(100))

    [queue, span] = trace.root.children
    assert (queue.kind, queue.duration_ms(trace.now)) == ("queue", 1000)
    assert (span.kind, span.duration_ms(trace.now)) == ("attempt", 2500)
    assert span.is_cancelled
    assert trace.execution_ms() == 2500
    assert trace.root.duration_ms(trace.now) == 3500
    wire = trace_to_wire(trace)["trace"]["rootSpan"]
    assert wire["children"][1]["data"]["duration"] == 2_500_000_000  # nanoseconds


def test_an_attempt_left_open_in_a_finished_run_ends_with_the_run() -> None:
    run = _run(RunStatus.CANCELED, finished_at=_at(3.5))
    trace = assemble(run, [_attempt(1, AttemptStatus.EXECUTING, 1, None)], [], [], [], _at(100))
    assert trace.root.children[1].duration_ms(trace.now) == 2500
    assert not trace.root.children[1].is_partial


def test_an_executing_attempt_is_open_and_lasts_until_now() -> None:
    run = _run(RunStatus.EXECUTING, started_at=_at(1))
    trace = assemble(run, [_attempt(1, AttemptStatus.EXECUTING, 1, None)], [], [], [], _at(4))
    attempt = trace.root.children[1]
    assert attempt.is_partial
    assert attempt.duration_ms(trace.now) == 3000
    assert trace.root.is_partial


def test_a_retrying_run_shows_the_backoff_it_is_in() -> None:
    run = _run(RunStatus.RETRYING, next_attempt_at=_at(10))
    trace = assemble(run, [_attempt(1, AttemptStatus.FAILED, 1, 2)], [], [], [], _at(5))
    kinds = [s.kind for s in trace.root.children]
    assert kinds == ["queue", "attempt", "backoff"]
    backoff = trace.root.children[2]
    assert backoff.is_partial
    assert backoff.duration_ms(trace.now) == 3000
    assert backoff.properties["nextAttemptAt"] == "2026-01-01T12:00:10.000Z"


def test_a_delayed_run_starts_with_its_delay_and_a_checkpoint_is_a_point() -> None:
    run = _run(RunStatus.COMPLETED, delayed_until=_at(5), queued_at=_at(5), dequeued_at=_at(6),
               finished_at=_at(9))
    checkpoint = Checkpoint(run_id=run.id, number=1, attempt_number=1, created_at=_at(7),
                            state={})
    trace = assemble(run, [_attempt(1, AttemptStatus.COMPLETED, 6, 9)], [checkpoint], [], [],
                     _at(100))
    assert [(s.kind, s.duration_ms(trace.now)) for s in trace.root.children] == [
        ("delay", 5000), ("queue", 1000), ("attempt", 3000)]
    [point] = trace.root.children[2].children
    assert (point.kind, point.duration_ms(trace.now), point.is_point) == ("checkpoint", 0, True)
    flat = trace_page_to_wire(trace, 10, None)
    assert [s["id"].split(":")[-1] for s in flat["data"]] == [
        run.id, "delay", "queue", "1", "1"]
    assert flat["pagination"] == {}


def test_the_waterfall_places_each_span_on_the_runs_time_axis() -> None:
    from reprise_server.shared.dashboard import waterfall_rows

    run = _run(RunStatus.COMPLETED, finished_at=_at(10))
    trace = assemble(run, [_attempt(1, AttemptStatus.FAILED, 1, 3),
                           _attempt(2, AttemptStatus.COMPLETED, 5, 10)], [], [], [], _at(100))

    rows = [(r.span.kind, r.depth, r.offset, r.width, r.duration_ms) for r in waterfall_rows(trace)]

    assert rows == [("run", 0, 0, 100, 10_000), ("queue", 1, 0, 10, 1000),
                    ("attempt", 1, 10, 20, 2000), ("backoff", 1, 30, 20, 2000),
                    ("attempt", 1, 50, 50, 5000)]


def _step(position: int, kind: str, name: str, status: str, start: float,
          end: float | None, attempt: int, **fields: object) -> RunStep:
    values: dict[str, object] = {
        "run_id": "run_trace0000000000000000001", "position": position, "kind": kind,
        "name": name, "status": status, "output": None, "error": None, "detail": None,
        "attempt_number": attempt, "copied_from": None, "created_at": _at(start),
        "completed_at": _at(end) if end is not None else None,
    }
    values.update(fields)
    return RunStep(**values)


def test_steps_and_waits_are_spans_of_their_attempt_and_a_resume_says_after_which_wait(
) -> None:
    run = _run(RunStatus.COMPLETED, finished_at=_at(20), started_at=_at(1), resume_count=1)
    attempts = [_attempt(1, AttemptStatus.PAUSED, 1, 3), _attempt(2, AttemptStatus.FAILED, 11, 12),
                _attempt(3, AttemptStatus.COMPLETED, 14, 20)]
    steps = [
        _step(0, "step", "charge", "COMPLETED", 1.5, 2, 1),
        _step(1, "wait", "wait_for", "COMPLETED", 2.5, 10, 1,
              detail={"type": "datetime", "until": "2026-01-01T12:00:10+00:00",
                      "waitpoints": ["waitpoint_1"]}),
        _step(2, "step", "ship", "COMPLETED", 14.5, 15, 3),
    ]

    trace = assemble(run, attempts, [], [], [], _at(30), steps=steps)

    kinds = [s.kind for s in trace.root.children]
    assert trace.root.properties["resumeCount"] == 1
    # No backoff between a paused attempt and its resume: the wait covers that time.
    assert kinds == ["queue", "attempt", "attempt", "backoff", "attempt"]
    first, resumed, _, retried = trace.root.children[1:]
    assert first.message == "Attempt 1"
    assert resumed.message == "Attempt 2 (resumed after wait_for)"
    assert resumed.properties["resumedAfter"] == "wait_for"
    assert retried.message == "Attempt 3 (retry)"
    assert retried.properties["retry"] is True
    step, wait = first.children
    assert (step.kind, step.message, step.duration_ms(trace.now)) == ("step", "Step charge", 500)
    assert step.properties["position"] == 0
    assert wait.kind == "wait"
    assert wait.message == "Wait until 2026-01-01 12:00:10 UTC"
    assert wait.properties["name"] == "wait_for"
    assert wait.duration_ms(trace.now) == 7500
    assert wait.properties["waitFor"] == {"type": "datetime",
                                          "until": "2026-01-01T12:00:10+00:00"}
    [ship] = retried.children
    assert ship.message == "Step ship"
    wire = trace_to_wire(trace)["trace"]["rootSpan"]
    assert wire["children"][1]["children"][1]["data"]["properties"]["kind"] == "wait"
    assert wire["children"][1]["children"][0]["parentId"] == first.id


def test_an_open_wait_of_a_waiting_run_lasts_until_now_and_a_failed_step_is_an_error() -> None:
    run = _run(RunStatus.WAITING, started_at=_at(1))
    steps = [
        _step(0, "step", "fetch", "FAILED", 1.2, 1.4, 1,
              error={"name": "ValueError", "message": "no"}),
        _step(1, "wait", "approval", "WAITING", 2, None, 1,
              detail={"type": "token", "token": "waitpoint_abc", "waitpoints": ["waitpoint_abc"]}),
    ]
    trace = assemble(run, [_attempt(1, AttemptStatus.PAUSED, 1, 3)], [], [], [], _at(9),
                     steps=steps)
    fetch, approval = trace.root.children[1].children
    assert fetch.is_error
    assert fetch.properties["error"]["message"] == "no"
    assert approval.is_partial
    assert approval.message == "Wait for token waitpoint_abc"
    assert approval.duration_ms(trace.now) == 7000


def test_steps_a_replay_reused_are_under_the_root() -> None:
    run = _run(RunStatus.COMPLETED, finished_at=_at(5), started_at=_at(1))
    steps = [_step(0, "step", "a", "COMPLETED", 0, 0, 0, copied_from="run_original"),
             _step(1, "step", "b", "COMPLETED", 2, 3, 1)]
    trace = assemble(run, [_attempt(1, AttemptStatus.COMPLETED, 1, 5)], [], [], [], _at(9),
                     steps=steps)
    reused = [s for s in trace.root.children if s.kind == "step"]
    assert [s.message for s in reused] == ["Step a (reused from run_original)"]
    assert [s.message for s in trace.root.children[-1].children] == ["Step b"]
