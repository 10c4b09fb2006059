"""The Overview's reads against real Postgres: error groups (by task, error type and
message fingerprint) with their counts and window, the runs filter selecting exactly a
group, ignoring, and the charts' numbers. Failures come from real workers running
``ov-raise`` (tests/support/tasks.py) and, for volume and chosen statuses, from the
lifecycle's moves in the database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from reprise_server.shared.db import db_now, transaction
from reprise_server.shared.overview import queries
from reprise_server.shared.runs import filters, lifecycle
from reprise_server.shared.runs.filters import FilterWording, RunFilter
from reprise_server.shared.runs.fingerprints import fingerprint
from tests.support import triggers
from tests.support.durable_rows import waiting_run
from tests.support.fixtures import ProjectKeys, wait_for_status
from tests.support.overview import complete_in_db, fail_in_db, set_times

WORDING = FilterWording("unknown status {value}", "bad from", "bad to")


def overview(project: ProjectKeys, window: str = "hour", env: str = "dev"
             ) -> queries.Overview:
    with transaction() as session:
        return queries.read_overview(session, project.environment_ids[env],
                                     queries.window_of(window), db_now(session))


def group_ids(project: ProjectKeys, group: queries.ErrorGroup, data: queries.Overview
              ) -> set[str]:
    with transaction() as session:
        return set(queries.group_run_ids(
            session, project.environment_ids["dev"],
            queries.group_filter(group.task, group.fingerprint, data.since, data.until), 1000))


def test_failures_group_by_task_error_type_and_message_fingerprint(
    project: ProjectKeys, celery_worker: Any
) -> None:
    # Real workers: the task raises; two messages differing only in their values.
    worker_runs = [
        triggers.in_db(project, "ov-raise", payload={
            "error": "TimeoutError", "message": "Timeout after 30s for user 123 'bob'"}),
        triggers.in_db(project, "ov-raise", payload={
            "error": "TimeoutError", "message": "Timeout after 45s for user 9 'al'"}),
    ]
    other_type = triggers.in_db(project, "ov-raise", payload={
        "error": "ValueError", "message": "Timeout after 1s for user 2 'c'"})
    for run_id in [*worker_runs, other_type]:
        wait_for_status(run_id, "FAILED")
    # The same group ending CRASHED (its worker died): a failure too.
    crashed = fail_in_db(project, "ov-raise", "TimeoutError",
                         "Timeout after 7s for user 77 'dee'", status="CRASHED")
    # Another task with the same error: another group.
    echo = [fail_in_db(project, "test-echo", "TimeoutError", f"Timeout after {n}s for user {n} 'u'",
                       status="TIMED_OUT" if n % 2 else "FAILED") for n in range(1, 4)]
    # Not in the window, not failures, or not this environment: in no group.
    old = fail_in_db(project, "ov-raise", "TimeoutError", "Timeout after 3s for user 1 'o'")
    set_times(old, created_at=-7200, finished_at=-7100)
    complete_in_db(project, "ov-raise")
    fail_in_db(project, "ov-raise", "TimeoutError", "Timeout after 3s for user 1 'p'", env="prod")

    data = overview(project)
    by_key = {(g.task, g.name): g for g in data.groups}
    assert sorted(by_key) == [("ov-raise", "TimeoutError"), ("ov-raise", "ValueError"),
                              ("test-echo", "TimeoutError")]
    timeouts = by_key[("ov-raise", "TimeoutError")]
    assert timeouts.count == 3
    assert timeouts.message == "Timeout after <n>s for user <n> '<str>'"
    assert timeouts.fingerprint == fingerprint("TimeoutError", "Timeout after 1s for user 1 'x'")
    assert timeouts.first_seen <= timeouts.last_seen
    assert timeouts.sample_run_id == crashed  # the newest
    assert group_ids(project, timeouts, data) == {*worker_runs, crashed}
    # The worker's error carries the traceback the page shows as the sample.
    worker_group = by_key[("ov-raise", "ValueError")]
    assert worker_group.count == 1
    assert worker_group.sample_run_id == other_type
    assert worker_group.sample_stack.startswith("Traceback")
    assert "in ov_raise" in worker_group.sample_stack
    assert by_key[("test-echo", "TimeoutError")].count == 3
    assert group_ids(project, by_key[("test-echo", "TimeoutError")], data) == set(echo)
    assert data.groups[0].count >= data.groups[-1].count  # most runs first

    # The runs list's filter (RunFilter.build, as the dashboard reads its query) selects
    # exactly the group, as does the filter a bulk action keeps.
    built = RunFilter.build(
        WORDING, api_version="2025-07-16", statuses="FAILED,CRASHED,TIMED_OUT,SYSTEM_FAILURE",
        task_identifiers="ov-raise", error_fingerprint=timeouts.fingerprint,
        created_from=data.since.isoformat(), created_to=data.until.isoformat())
    with transaction() as session:
        env_id = project.environment_ids["dev"]
        assert filters.count_runs(session, env_id, built) == 3
        assert set(filters.run_ids_matching(session, env_id, built, 10)) == {
            *worker_runs, crashed}

    # A week reaches the older failure.
    week = {(g.task, g.name): g for g in overview(project, "week").groups}
    assert week[("ov-raise", "TimeoutError")].count == 4


def test_ignoring_a_group_hides_it_in_its_environment_until_unignored(
    project: ProjectKeys,
) -> None:
    fail_in_db(project, "test-echo", "KeyError", "missing 'a'")
    fail_in_db(project, "test-echo", "KeyError", "missing 'b'", env="prod")
    group = overview(project).groups[0]
    with transaction() as session:
        queries.ignore_group(session, project.environment_ids["dev"], group.task,
                             group.fingerprint, group.name, group.message)
        # Twice is once.
        queries.ignore_group(session, project.environment_ids["dev"], group.task,
                             group.fingerprint, group.name, group.message)
    hidden = overview(project)
    assert hidden.groups == []
    assert [g.fingerprint for g in hidden.ignored] == [group.fingerprint]
    assert hidden.ignored[0].ignored
    assert hidden.ignored[0].count == 1
    assert [g.fingerprint for g in overview(project, env="prod").groups] == [group.fingerprint]
    # An ignored group with no failure in the window is still listed, to unignore.
    set_times(hidden.ignored[0].sample_run_id, created_at=-7200)
    elsewhere = overview(project)
    assert elsewhere.ignored == []
    assert [
        (r.task_identifier, r.fingerprint, r.message) for r in elsewhere.ignored_elsewhere
    ] == [("test-echo", group.fingerprint, "missing '<str>'")]
    set_times(hidden.ignored[0].sample_run_id, created_at=-60)
    with transaction() as session:
        queries.unignore_group(session, project.environment_ids["dev"], group.task,
                               group.fingerprint)
    restored = overview(project)
    assert [g.fingerprint for g in restored.groups] == [group.fingerprint]
    assert restored.ignored == []
    assert restored.ignored_elsewhere == []


def test_chart_numbers_runs_by_status_waits_durations_and_failure_rates(
    project: ProjectKeys,
) -> None:
    done = [complete_in_db(project, "test-echo", ms) for ms in (100, 200, 300, 400)]
    for seconds, run_id in zip((1, 2, 3, 4), done, strict=True):
        set_times(run_id, queued_at=-60, dequeued_at=-60 + seconds)
    failed = fail_in_db(project, "ov-raise", "ValueError", "no")
    canceled = triggers.in_db(project, "test-echo", publish=False, delay="1h")
    with transaction() as session:
        assert lifecycle.cancel(session, canceled)
    waiting = triggers.in_db(project, "test-echo", publish=False, delay="1h")
    assert waiting
    at_a_wait = waiting_run(project, wait={"type": "datetime",
                                           "until": "2099-01-01T00:00:00+00:00"})
    assert at_a_wait
    set_times(failed, created_at=-1800)

    data = overview(project)
    assert len(data.buckets) == 60
    assert all(b.start - a.start == timedelta(minutes=1)
               for a, b in zip(data.buckets, data.buckets[1:], strict=False))
    totals = {c: sum(b.counts[c] for b in data.buckets) for c in queries.CATEGORIES}
    assert totals == {"completed": 4, "failed": 1, "canceled": 1, "expired": 0, "waiting": 1,
                      "active": 1}
    # The failure created half an hour ago sits in the middle of the hour.
    assert [i for i, b in enumerate(data.buckets) if b.counts["failed"]] in ([29], [30])

    stats = {t.task: t for t in data.tasks}
    echo = stats["test-echo"]
    assert (echo.runs, echo.finished, echo.failed, echo.failure_rate) == (6, 5, 0, 0.0)
    assert echo.wait_p50 is not None
    assert abs(echo.wait_p50 - 2.5) < 0.01
    assert echo.wait_p95 is not None
    assert abs(echo.wait_p95 - 3.85) < 0.01
    # Of the four that ran: the run canceled before it started does not count as 0 ms.
    assert echo.duration_p50 == 250
    assert echo.duration_p95 is not None
    assert abs(echo.duration_p95 - 385) < 0.01
    raised = stats["ov-raise"]
    assert (raised.runs, raised.finished, raised.failed, raised.failure_rate) == (1, 1, 1, 1.0)
    # Day and week windows: coarser buckets over the same runs.
    assert len(overview(project, "day").buckets) == 96
    assert len(overview(project, "week").buckets) == 84
    assert sum(b.total for b in overview(project, "week").buckets) == 8
