"""The run page's waterfall and logs panel in a real browser. Runs are executed by the
session's worker (the ``trace-*`` tasks of tests/support/tasks.py); their log lines are
written into ``run_logs`` by the test, as the worker's capture writes them."""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.api.dashboard.conftest import screenshot
from tests.support import tasks, triggers
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status
from tests.support.live_server import LiveServer
from tests.support.runlogs import add_line

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

TRACEBACK = ('Traceback (most recent call last):\n  File "billing.py", line 12, in charge\n'
             "    customer = payload['user_id']\nKeyError: 'user_id'")


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _lines(page: Any) -> Any:
    return page.get_by_role("list", name="Log lines").locator("li")


def _attempts_started(run_id: str) -> dict[int, datetime]:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs import attempts_repository

    with transaction() as session:
        return {a.number: a.started_at for a in attempts_repository.attempts_of(session, [run_id])[run_id]
                if a.started_at is not None}


def test_a_run_retried_twice_shows_three_attempts_and_its_logs_filtered(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    run_id = triggers.via_live_server(dashboard, project, "trace-retried")
    wait_for_status(run_id, "COMPLETED")
    started = _attempts_started(run_id)  # each line at its attempt's time, as if logged then
    add_line(run_id, "connecting to the billing database", attempt=1, logger="billing",
             logged_at=started[1])
    add_line(run_id, "charging customer", attempt=2, level="DEBUG", logger="billing",
             logged_at=started[2])
    add_line(run_id, "charge failed", attempt=2, level="ERROR", logger="billing",
             exception=TRACEBACK, logged_at=started[2])
    add_line(run_id, "retry budget at 1", attempt=3, level="WARNING", logger="billing",
             logged_at=started[3])
    page = signed_in
    page.goto(f"/dashboard/runs/{run_id}")

    waterfall = page.get_by_role("table", name="Trace waterfall")
    expect(waterfall.locator("[data-kind=run]")).to_contain_text("trace-retried")
    expect(waterfall.locator("[data-kind=queue]")).to_have_count(1)
    expect(waterfall.locator("[data-kind=attempt]")).to_have_count(3)
    expect(waterfall.locator("[data-kind=backoff]")).to_have_count(2)
    expect(waterfall.locator("[data-kind=attempt]").nth(0)).to_contain_text("FAILED")
    expect(waterfall.locator("[data-kind=attempt]").nth(1)).to_contain_text("2 log lines")
    expect(waterfall.locator("[data-kind=attempt]").nth(2)).to_contain_text("COMPLETED")
    for row in waterfall.locator("[data-kind=backoff]").all():
        expect(row.locator(".wf-dur")).not_to_have_text(re.compile(r"^\s*0 ms"))

    # Four lines, and after attempt 1's and attempt 2's lines what each raised.
    expect(_lines(page)).to_have_count(6)
    expect(_lines(page).nth(1)).to_have_attribute("data-attempt-error", "1")
    expect(_lines(page).nth(1)).to_contain_text("RuntimeError: trace attempt 1 fails")
    expect(_lines(page).nth(4)).to_have_attribute("data-attempt-error", "2")
    expect(_lines(page).nth(5)).to_contain_text("retry budget at 1")
    failing = _lines(page).filter(has_text="charge failed")
    traceback = failing.locator("details.traceback")
    expect(traceback).to_have_attribute("open", "")
    expect(traceback.locator("pre")).to_be_visible()
    expect(traceback).to_contain_text("KeyError: 'user_id'")
    page.get_by_role("region", name="Waterfall").scroll_into_view_if_needed()
    screenshot(page, "run-trace", dark=True)
    page.get_by_role("region", name="Logs").scroll_into_view_if_needed()
    screenshot(page, "run-logs", dark=True)

    page.get_by_label("Level").select_option("WARNING")
    expect(_lines(page)).to_have_count(4)
    expect(_lines(page).nth(0)).to_contain_text("trace attempt 1 fails")
    expect(_lines(page).nth(1)).to_contain_text("charge failed")
    expect(_lines(page).nth(2)).to_contain_text("trace attempt 2 fails")
    expect(_lines(page).nth(3)).to_contain_text("retry budget at 1")

    page.reload()  # the address kept the filter
    expect(page.get_by_label("Level")).to_have_value("WARNING")
    expect(_lines(page)).to_have_count(4)
    page.get_by_label("Level").select_option("")
    page.get_by_placeholder("Text in a line or traceback").fill("DATABASE")
    expect(_lines(page)).to_have_count(1)
    expect(_lines(page)).to_contain_text("connecting to the billing database")
    page.get_by_placeholder("Text in a line or traceback").fill("user_id")  # the traceback's text matches too
    expect(_lines(page)).to_have_count(1)
    expect(_lines(page)).to_contain_text("charge failed")
    page.get_by_placeholder("Text in a line or traceback").fill("nothing like this")
    expect(page.get_by_text("No line matches.")).to_be_visible()


def test_what_a_failed_attempt_raised_shows_expanded_after_that_attempts_lines(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    # A real run: the worker captures each attempt's line; attempt 1 raises, attempt 2 ends.
    run_id = triggers.via_live_server(dashboard, project, "logs-fail-once")
    wait_for_status(run_id, "COMPLETED")
    page = signed_in
    page.goto(f"/dashboard/runs/{run_id}")

    def shown_in_order() -> None:
        expect(_lines(page)).to_have_count(3)
        expect(_lines(page).nth(0)).to_contain_text("attempt 1 starts")
        failed = _lines(page).nth(1)
        expect(failed).to_have_attribute("data-attempt-error", "1")
        expect(failed.locator(".log-level")).to_have_text("ERROR")
        expect(failed.locator(".log-attempt")).to_have_text("#1")
        expect(failed.locator(".log-logger")).to_have_text("Attempt 1 failed")
        expect(failed.locator(".log-message")).to_have_text("ValueError: the first attempt fails")
        traceback = failed.locator("details.traceback")
        expect(traceback).to_have_attribute("open", "")
        expect(traceback.locator("pre")).to_be_visible()
        expect(traceback).to_contain_text("Traceback (most recent call last)")
        expect(traceback).to_contain_text("in logs_fail_once")
        expect(_lines(page).nth(2)).to_contain_text("attempt 2 starts")
        expect(_lines(page).nth(2)).not_to_have_attribute("data-attempt-error", re.compile(".*"))

    shown_in_order()  # as the page renders it
    # It is the attempt's stored error, not a captured line: run_logs holds the two lines.
    with httpx.Client(base_url=dashboard.base_url, timeout=15) as client:
        logs = client.get(f"/api/v1/runs/{run_id}/logs", headers=project.headers())
        assert logs.status_code == 200, logs.text
    assert "the first attempt fails" not in logs.text
    # The filters read through the panel's script: the error is an ERROR entry and its
    # stack trace is searched as a traceback is.
    page.get_by_label("Level").select_option("ERROR")
    expect(_lines(page)).to_have_count(1)
    expect(_lines(page)).to_have_attribute("data-attempt-error", "1")
    expect(_lines(page).locator("details.traceback")).to_have_attribute("open", "")
    page.get_by_label("Level").select_option("CRITICAL")
    expect(page.get_by_text("No line matches.")).to_be_visible()
    page.get_by_label("Level").select_option("")
    page.get_by_placeholder("Text in a line or traceback").fill("logs_fail_once")
    expect(_lines(page)).to_have_count(1)
    expect(_lines(page)).to_contain_text("Attempt 1 failed")
    page.get_by_placeholder("Text in a line or traceback").fill("")
    shown_in_order()  # as the script places it among lines read from logs.json


def test_a_parent_shows_its_checkpoint_and_links_to_its_child(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    parent = triggers.via_live_server(dashboard, project, "trace-parent")
    wait_for_status(parent, "COMPLETED")
    page = signed_in
    page.goto(f"/dashboard/runs/{parent}")

    waterfall = page.get_by_role("table", name="Trace waterfall")
    expect(waterfall.locator("[data-kind=checkpoint]")).to_contain_text("Checkpoint #1")
    child = waterfall.locator("[data-kind=child]")
    expect(child).to_contain_text("trace-child")
    page.get_by_role("region", name="Waterfall").scroll_into_view_if_needed()
    screenshot(page, "run-children")
    child.get_by_role("link", name="trace-child").click()
    page.wait_for_url(re.compile(r"/dashboard/runs/run_\w+\?env=dev"))
    assert parent not in page.url
    expect(page.get_by_role("heading", name=re.compile("trace-child"))).to_be_visible()


def test_the_logs_panel_tails_a_line_written_while_the_run_executes(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    name = f"tail-{secrets.token_hex(4)}"
    run_id = triggers.via_live_server(dashboard, project, "trace-gated", payload={"gate": name})
    try:
        assert tasks.gate(f"{name}:started").wait(15)
        add_line(run_id, "before the page opened")
        page = signed_in
        page.goto(f"/dashboard/runs/{run_id}")
        expect(_lines(page)).to_have_count(1)
        expect(page.get_by_role("region", name="Waterfall").locator("[data-kind=attempt]")
               ).to_contain_text("so far")

        add_line(run_id, "written while you watch", level="WARNING")

        expect(_lines(page)).to_have_count(2, timeout=10_000)
        expect(_lines(page).nth(1)).to_contain_text("written while you watch")
    finally:
        tasks.gate(name).set()
    wait_for_status(run_id, "COMPLETED")


def test_the_live_tail_places_a_failed_attempts_error_before_the_next_attempts_lines(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    name = f"retry-{secrets.token_hex(4)}"
    page = signed_in
    run_id = triggers.via_live_server(dashboard, project, "trace-fails-then-gated",
                                      payload={"gate": name})
    try:
        page.goto(f"/dashboard/runs/{run_id}")  # most likely before attempt 1 has ended
        assert tasks.gate(f"{name}:started").wait(20)  # attempt 2 is executing
        # The page did not reload (the run is still active): the script placed it all.
        expect(_lines(page)).to_have_count(3, timeout=10_000)
        expect(_lines(page).nth(0)).to_contain_text("attempt 1 starts")
        failed = _lines(page).nth(1)
        expect(failed).to_have_attribute("data-attempt-error", "1")
        expect(failed).to_contain_text("LookupError: no such invoice")
        expect(failed.locator("details.traceback")).to_have_attribute("open", "")
        expect(failed.locator("details.traceback")).to_contain_text("in trace_fails_then_gated")
        expect(_lines(page).nth(2)).to_contain_text("attempt 2 starts")
        expect(page.get_by_role("region", name="Logs")).to_contain_text("Live: new lines")
    finally:
        tasks.gate(name).set()
    wait_for_status(run_id, "COMPLETED")
    # The page reloads itself once its refresh sees the run done, and a reload of ours
    # racing that one is aborted: the ended run is read in a page of its own.
    ended = page.context.new_page()
    ended.goto(f"/dashboard/runs/{run_id}")
    expect(_lines(ended)).to_have_count(3)
    expect(ended.locator("[data-attempt-error]")).to_have_count(1)


def test_a_run_canceled_after_seconds_of_execution_shows_them(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    name = f"cancel-{secrets.token_hex(4)}"
    run_id = triggers.via_live_server(dashboard, project, "trace-gated", payload={"gate": name})
    try:
        assert tasks.gate(f"{name}:started").wait(15)
        time.sleep(2.5)
        with httpx.Client(base_url=dashboard.base_url, timeout=15) as client:
            canceled = client.post(f"/api/v2/runs/{run_id}/cancel", headers=project.headers())
            assert canceled.status_code == 200, canceled.text
        wait_for_status(run_id, "CANCELED")
    finally:
        tasks.gate(name).set()
    page = signed_in
    page.goto(f"/dashboard/runs/{run_id}")

    attempt = page.get_by_role("table", name="Trace waterfall").locator("[data-kind=attempt]")
    expect(attempt).to_contain_text("CANCELED")
    seconds = float(wait_for(lambda: re.search(r"(\d+\.\d) s", attempt.inner_text())).group(1))
    assert 2.4 <= seconds < 10
    overview = page.get_by_role("region", name="Overview")
    expect(overview).not_to_contain_text("0 ms")
    expect(overview).to_contain_text(re.compile(r"Duration\s*\d+\.\d s"))
    # The runs list counts the same seconds, not the zero the worker never recorded.
    page.goto("/dashboard/runs")
    listed = page.locator(f"tr[data-run='{run_id}'] td.num")
    expect(listed).to_have_text(re.compile(r"^\d+\.\d s$"))
    assert 2.4 <= float(listed.inner_text().split()[0]) < 10
