"""The Overview page in a real browser: its charts drawn with the window's numbers (light
and dark), the window switch, an error group's link landing on exactly its runs, Ignore
and Unignore, and Replay these runs replaying exactly the group's runs. Failures come
from real workers running ``ov-raise`` (tests/support/tasks.py) and, for one older than
the hour, from the lifecycle's moves in the database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text

from tests.api.dashboard.conftest import screenshot
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status
from tests.support.overview import fail_in_db, set_times

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

TIMEOUTS = ("Timeout after 30s for user 123 'bob'", "Timeout after 45s for user 9 'al'")


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _replayed_from(run_ids: list[str]) -> list[str]:
    from reprise_server.shared.db import transaction

    with transaction() as session:
        return sorted(session.scalars(text(
            "SELECT replayed_from FROM runs WHERE replayed_from = ANY(:ids)"
        ), {"ids": run_ids}))


def group_fingerprint(group: Any) -> str:
    return str(group.get_attribute("data-group"))


def _group(page: Any, task: str, name: str, where: str = "section.groups") -> Any:
    return page.locator(where).get_by_role("article", name=f"Error group {task} {name}")


def test_overview_charts_window_error_group_runs_ignore_and_replay(
    signed_in: Any, project: ProjectKeys, celery_worker: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reprise_server.shared.settings import get_settings

    expect = _expect()
    monkeypatch.setattr(get_settings(), "bulk_batch_size", 1)
    group_runs = [triggers.in_db(project, "ov-raise", payload={
        "error": "TimeoutError", "message": message}) for message in TIMEOUTS]
    other = triggers.in_db(project, "ov-raise", payload={"error": "ValueError",
                                                         "message": "bad input 7"})
    done = triggers.in_db(project, "test-echo", payload={"n": 1})
    for run_id in [*group_runs, other]:
        wait_for_status(run_id, "FAILED")
    wait_for_status(done, "COMPLETED")
    # The same group two hours ago: in the day's window, not the hour's.
    older = fail_in_db(project, "ov-raise", "TimeoutError", "Timeout after 5s for user 4 'z'")
    set_times(older, created_at=-7200, finished_at=-7190)

    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview dev")
    expect(page.get_by_role("link", name="Last hour")).to_have_attribute("aria-current", "page")

    # The charts: SVG drawn with the window's numbers.
    runs_chart = page.locator("svg[data-chart=runs]")
    expect(runs_chart).to_be_visible()
    values = runs_chart.locator("rect.bar").evaluate_all(
        "bars => bars.map(b => [b.dataset.series, Number(b.dataset.value)])")
    totals: dict[str, int] = {}
    for series, value in values:
        totals[series] = totals.get(series, 0) + value
    assert totals == {"failed": 3, "completed": 1}
    expect(page.locator("[data-total=failed] strong")).to_have_text("3")
    rate = page.locator("svg[data-chart=failures] rect[data-task=ov-raise]")
    expect(rate).to_have_attribute("data-value", "1")
    expect(page.locator("svg[data-chart=failures]")).to_contain_text("100% (3/3)")
    expect(page.locator("svg[data-chart=wait] rect[data-task=test-echo]")).to_have_count(2)
    expect(page.locator("svg[data-chart=duration] rect[data-task=ov-raise]")).to_have_count(2)

    # Light and dark: the bars take the palette's colours.
    failed_bar = runs_chart.locator("rect.s-failed").first
    light = failed_bar.evaluate("b => getComputedStyle(b).fill")
    page.emulate_media(color_scheme="dark")
    dark = failed_bar.evaluate("b => getComputedStyle(b).fill")
    page.emulate_media(color_scheme="light")
    assert (light, dark) == ("rgb(180, 35, 24)", "rgb(255, 138, 128)")

    group = _group(page, "ov-raise", "TimeoutError")
    expect(group.locator("[data-cell=count]")).to_have_text("2 runs")
    expect(group.locator("[data-cell=message]")).to_have_text(
        "Timeout after <n>s for user <n> '<str>'")
    expect(_group(page, "ov-raise", "ValueError").locator("[data-cell=count]")).to_have_text(
        "1 run")
    screenshot(page, "overview", dark=True)
    group.get_by_text("Sample traceback").click()
    expect(group.locator("pre")).to_contain_text("TimeoutError")

    # The window switch: the day reaches the older failure.
    page.get_by_role("link", name="Last day").click()
    expect(page.get_by_role("link", name="Last day")).to_have_attribute("aria-current", "page")
    assert "window=day" in page.url
    expect(group.locator("[data-cell=count]")).to_have_text("3 runs")
    page.get_by_role("link", name="Last hour").click()
    expect(group.locator("[data-cell=count]")).to_have_text("2 runs")

    # The group's link: the runs list showing exactly its runs.
    fingerprint = group_fingerprint(group)
    group.get_by_role("link", name="View 2 runs").click()
    page.wait_for_url("**/dashboard/runs?**")
    rows = page.locator("tbody#runs-rows tr[data-run]")
    expect(rows).to_have_count(2)
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.run)")) == sorted(group_runs)
    expect(page.locator("[data-error-group]")).to_contain_text(fingerprint)
    expect(page.get_by_label("Status")).to_have_value("CRASHED,FAILED,SYSTEM_FAILURE,TIMED_OUT")
    # Applying the form again keeps the group's filter.
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(2)
    assert f"error={fingerprint}" in page.url
    page.go_back()
    page.go_back()

    # Ignore hides the group; it is listed among the ignored, and Unignore restores it.
    group.get_by_role("button", name="Ignore").click()
    expect(group).to_have_count(0)
    ignored = page.locator("details#ignored")
    expect(ignored.locator("> summary")).to_have_text("Ignored groups (1)")
    ignored.locator("> summary").click()
    hidden = _group(page, "ov-raise", "TimeoutError", "details#ignored")
    expect(hidden.locator("[data-cell=count]")).to_have_text("2 runs")
    screenshot(page, "overview-ignored")
    hidden.get_by_role("button", name="Unignore").click()
    expect(group.locator("[data-cell=count]")).to_have_text("2 runs")
    expect(page.locator("details#ignored")).to_have_count(0)

    # Replay these runs: the bulk dialog's preview, then its progress, replaying exactly
    # the group's two runs (not the older one, not the other group's).
    group.get_by_role("link", name="Replay these runs").click()
    expect(page.get_by_role("status")).to_contain_text("This will act on 2 runs")
    expect(page.get_by_label("Replay each run")).to_be_checked()
    screenshot(page, "overview-replay")
    page.get_by_role("button", name="Start bulk action").click()
    page.wait_for_url(re.compile(r"/dashboard/bulk/bulk_\w+"))
    expect(page.locator("[data-progress-text]")).to_have_text("2 of 2 processed",
                                                              timeout=30_000)
    replayed = wait_for(lambda: _replayed_from([*group_runs, older, other]) or None,
                        what="the group's replays")
    assert replayed == sorted(group_runs)
