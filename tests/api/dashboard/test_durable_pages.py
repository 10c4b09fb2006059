"""Durable runs in a real browser: a run waiting for a token completed from its page, the
Waitpoints page, a run's steps and waits in the waterfall, and a replay from a step. Runs
are executed by the session's worker (the ``durable-*`` tasks of tests/support/tasks.py);
tokens are created in Postgres through the token service."""

from __future__ import annotations

import re
from typing import Any

import pytest

from reprise_server.shared.durable.models import Waitpoint
from tests.api.dashboard.conftest import screenshot
from tests.support import triggers
from tests.support.durable_rows import new_token, stored
from tests.support.fixtures import ProjectKeys, run_row, wait_for_status
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _token(token_id: str) -> Waitpoint:
    return stored(Waitpoint, token_id)


def test_a_run_waiting_for_a_token_is_completed_from_its_page(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    token = new_token(project, tags=["approval"], timeout="2h")
    run_id = triggers.via_live_server(dashboard, project, "durable-token",
                                      payload={"token": token})
    wait_for_status(run_id, "WAITING")
    page = signed_in
    page.goto(f"/dashboard/runs/{run_id}")

    waiting = page.get_by_role("region", name="Waiting for")
    expect(waiting).to_contain_text("Waiting for a token")
    expect(waiting).to_contain_text(token)
    expect(waiting.locator("dd").filter(has_text="in 1 h")).to_have_count(1)  # the timeout
    waterfall = page.get_by_role("table", name="Trace waterfall")
    expect(waterfall.locator("[data-kind=wait]")).to_contain_text(f"Wait for token {token}")
    expect(page.get_by_role("heading", name=re.compile("durable-token"))).to_contain_text(
        "WAITING")
    screenshot(page, "run-waiting", dark=True)

    waiting.get_by_role("button", name="Complete token").click()
    dialog = page.get_by_role("dialog")
    data = dialog.get_by_role("textbox", name="Data (JSON)")
    data.fill('{"approved": tru')
    expect(dialog.locator("[data-json-error]")).to_contain_text("Not valid JSON")
    data.fill('{"approved": true, "by": "ada"}')
    dialog.get_by_role("button", name="Complete", exact=True).click()

    page.wait_for_url(f"**/dashboard/runs/{run_id}?env=dev")
    assert _token(token).status == "COMPLETED"
    assert _token(token).output == {"approved": True, "by": "ada"}
    # The worker resumes it: the wait answers the token's data.
    done = wait_for_status(run_id, "COMPLETED")
    assert done.output == {"data": {"approved": True, "by": "ada"}}
    page.reload()
    expect(page.get_by_role("region", name="Waiting for")).to_have_count(0)
    attempts = page.get_by_role("region", name="Attempts")
    expect(attempts.locator("[data-attempt='2']")).to_contain_text("resumed after")
    expect(page.get_by_role("region", name="Overview").locator("[data-attempts]")).to_contain_text(
        "1 of 1 · 1 resume")


def test_the_waitpoints_page_lists_filters_and_completes_tokens(
    signed_in: Any, project: ProjectKeys
) -> None:
    expect = _expect()
    page = signed_in
    page.get_by_role("link", name="Waitpoints").click()
    page.wait_for_url("**/dashboard/waitpoints?env=dev")
    expect(page.get_by_text("No waitpoint token in this environment yet.")).to_be_visible()

    approval = new_token(project, tags=["approval", "finance"], timeout="1h",
                         idempotency_key="invoice-1042")
    other = new_token(project, tags=["nightly"])
    page.reload()
    rows = page.get_by_role("table", name="Tokens").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-token", other)
    expect(rows.nth(1)).to_contain_text("invoice-1042")
    screenshot(page, "waitpoints", dark=True)

    page.get_by_label("Tag").fill("finance")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-token", approval)

    rows.first.get_by_role("button", name=f"Complete {approval}").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("textbox", name="Data (JSON)").fill('{"amount": 1042}')
    dialog.get_by_role("button", name="Complete", exact=True).click()
    expect(rows.first).to_contain_text("COMPLETED")
    assert "tag=finance" in page.url  # back to the filtered list
    assert _token(approval).output == {"amount": 1042}

    page.get_by_label("Tag").fill("")
    page.get_by_label("Status").select_option("WAITING")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-token", other)


def test_steps_show_in_the_waterfall_and_a_replay_starts_from_a_chosen_step(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    original = triggers.via_live_server(dashboard, project, "durable-steps",
                                        payload={"wait": 0.5})
    wait_for_status(original, "COMPLETED", timeout=30)
    page = signed_in
    page.goto(f"/dashboard/runs/{original}")

    waterfall = page.get_by_role("table", name="Trace waterfall")
    steps = waterfall.locator("[data-kind=step]")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("Step a")
    expect(steps.nth(1)).to_contain_text("Step b")
    expect(waterfall.locator("[data-kind=wait]")).to_contain_text("Wait until")
    expect(waterfall.locator("[data-kind=attempt]").nth(1)).to_contain_text("resumed after")
    record = page.get_by_role("region", name="Steps and waits")
    expect(record.locator("tbody tr")).to_have_count(3)
    page.get_by_role("region", name="Waterfall").scroll_into_view_if_needed()
    screenshot(page, "run-steps")

    page.get_by_role("button", name="Replay", exact=True).click()
    dialog = page.get_by_role("dialog")
    start = dialog.get_by_role("combobox", name="Start from")
    expect(start.locator("option")).to_have_count(4)  # the beginning and 3 recorded
    expect(start.locator("option").nth(2)).to_have_text("Wait #1 wait")
    start.select_option(label="Step #2 b")
    dialog.get_by_role("button", name="Replay run").click()

    page.wait_for_url(re.compile(r"/dashboard/runs/run_\w+\?env=dev"))
    new_id = re.search(r"/runs/(run_\w+)", page.url).group(1)  # type: ignore[union-attr]
    assert new_id != original
    replayed = wait_for_status(new_id, "COMPLETED", timeout=30)
    assert replayed.resumed_from == {"step": "2", "position": 2}
    assert replayed.output["fromStep"] is not None
    page.reload()
    record = page.get_by_role("region", name="Steps and waits")
    expect(record.locator("tbody tr").nth(0)).to_contain_text("reused from")
    assert run_row(original).status == "COMPLETED"
