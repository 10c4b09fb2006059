"""Tasks, Search, API keys and schedule editing in a real browser, found by the accessible
names docs/dashboard.md uses. The same pages over plain HTTP, with their refusals:
tests/api/test_dashboard_pages.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.api.dashboard.conftest import screenshot
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _set(run_id: str, **values: Any) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.models import Run

    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(**values))


def _main_nav(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def test_tasks_page_and_a_test_run_with_an_edited_payload(
    signed_in: Any, project: ProjectKeys
) -> None:
    expect = _expect()
    for n, status in enumerate(("COMPLETED", "COMPLETED", "FAILED", "COMPLETED")):
        run_id = triggers.in_db(project, "test-echo", publish=False, payload={"order": n})
        _set(run_id, status=status)
    _set(triggers.in_db(project, "test-fail-until", publish=False), status="FAILED")
    triggers.in_db(project, "dash-limited", publish=False, payload={"gate": "x"})

    page = signed_in
    _main_nav(page, "Tasks")
    expect(page.get_by_role("heading", level=1)).to_have_text("Tasks dev")
    echo = page.locator("tr[data-task='test-echo']")
    expect(echo.locator("[data-cell=failure-rate]")).to_contain_text("25%")
    expect(echo.locator("[data-cell=recent] a .badge")).to_have_count(4)
    expect(echo.locator("[data-cell=attempts]")).to_have_text("1")
    expect(page.locator("tr[data-task='dash-limited'] [data-cell=limits]")).to_contain_text(
        "dash-shared · 1")
    expect(page.locator("tr[data-task='test-ttl-default'] [data-cell=ttl]")).to_have_text("1h")
    echo.evaluate("row => row.scrollIntoView({block: 'center'})")
    screenshot(page, "tasks", dark=True)

    echo.get_by_role("button", name="Test test-echo").click()
    editor = page.get_by_label("Payload")
    expect(editor).to_have_value(re.compile(r'"order": 3'))
    editor.fill('{"order": ')
    expect(page.locator("[data-json-error]")).to_contain_text("Not valid JSON")
    page.get_by_role("button", name="Trigger test run").click()  # held back by the script
    expect(page).to_have_url(re.compile(r"/tasks/test-echo/test"))
    editor.fill('{"order": 42}')
    page.get_by_role("button", name="Trigger test run").click()
    page.wait_for_url(re.compile(r"/dashboard/runs/run_"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("test-echo")
    run_id = page.url.split("/runs/")[1].split("?")[0]
    assert run_row(run_id).payload == {"order": 42}


def test_search_opens_a_run_a_tag_or_a_results_page(signed_in: Any, project: ProjectKeys
                                                    ) -> None:
    expect = _expect()
    keyed = triggers.in_db(project, "test-echo", publish=False, idempotencyKey="invoice-2041",
                           tags=["customer-17"])
    other = triggers.in_db(project, "test-sleep", publish=False, tags=["invoice-2041"])
    page = signed_in
    search = page.get_by_role("search").get_by_label("Search")

    search.fill(keyed)
    search.press("Enter")
    page.wait_for_url(re.compile(rf"/runs/{keyed}"))

    page.get_by_role("search").get_by_label("Search").fill("customer-17")
    page.get_by_role("search").get_by_label("Search").press("Enter")
    page.wait_for_url(re.compile(r"/runs\?env=dev&tag=customer-17"))
    expect(page.locator(f"tr[data-run='{keyed}']")).to_be_visible()
    expect(page.locator(f"tr[data-run='{other}']")).to_have_count(0)

    # A key that is also a tag: both, on a small results page.
    page.get_by_role("search").get_by_label("Search").fill("invoice-2041")
    page.get_by_role("search").get_by_label("Search").press("Enter")
    results = page.get_by_role("region", name="Search results")
    expect(results).to_contain_text("1 run tagged invoice-2041")
    expect(results.get_by_role("link", name=keyed)).to_be_visible()
    screenshot(page, "search")

    page.get_by_role("search").get_by_label("Search").fill("no-such-thing")
    page.get_by_role("search").get_by_label("Search").press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Nothing found for no-such-thing")


def test_api_keys_create_shown_once_and_revoke_confirmed(
    signed_in: Any, project: ProjectKeys, context: Any
) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.models import ApiKey

    expect = _expect()
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = signed_in
    _main_nav(page, "API keys")
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
    expect(page.locator("tr[data-key]")).to_have_count(3)
    page.get_by_label("Environment", exact=True).select_option("staging")
    page.get_by_role("button", name="Create key").click()
    created = page.get_by_role("status", name="New API key")
    expect(created).to_contain_text("shown this once")
    secret = created.get_by_label("Secret key").input_value()
    assert secret.startswith("tr_stg_")
    created.get_by_role("button", name="Copy").click()
    expect(created).to_contain_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "api-keys")

    _main_nav(page, "API keys")
    expect(page.get_by_role("status", name="New API key")).to_have_count(0)
    assert secret not in page.content()
    prefix = secret[:13]  # what the list shows of it
    row = page.locator(f"tr[data-key='{prefix}']")
    expect(row).to_contain_text("Active")
    row.get_by_role("button", name=f"Revoke {prefix}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Revoke {prefix}…?")
    dialog.get_by_role("button", name="Revoke key").click()
    expect(page.locator(f"tr[data-key='{prefix}']")).to_contain_text("Revoked")
    with transaction() as session:
        revoked = session.scalar(select(ApiKey.revoked_at).where(ApiKey.display_prefix == prefix))
    assert revoked is not None


def test_create_edit_toggle_and_delete_a_schedule(signed_in: Any, project: ProjectKeys) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.schedules.models import Schedule
    from reprise_server.shared.schedules.service import sync_declarative

    with transaction() as session:
        sync_declarative(session, project.project_id, project.environment_ids["dev"], "dev",
                         {"test-sleep": {"cron": "0 3 * * *"}})
    expect = _expect()
    page = signed_in
    _main_nav(page, "Schedules")
    expect(page.get_by_role("row").filter(has_text="test-sleep")).to_contain_text(
        "read-only: declared in code")
    page.get_by_role("button", name="New schedule").click()
    page.get_by_label("Task").fill("test-echo")
    cron = page.get_by_label("Cron")
    description = page.locator("[data-cron-description]")
    cron.fill("61 * * * *")
    expect(description).to_contain_text("61 * * * *")
    expect(cron).to_have_attribute("aria-invalid", "true")
    cron.fill("0 9 * * 1-5")
    expect(description).to_have_text("At 09:00 on Monday through Friday")
    page.get_by_label("Timezone").fill("Europe/Paris")
    page.get_by_label("External id").fill("team-standup")
    page.get_by_label("Deduplication key").fill("standup")
    screenshot(page, "schedule-edit")
    page.get_by_role("button", name="Create schedule").click()

    row = page.get_by_role("row").filter(has_text="team-standup")
    expect(row).to_contain_text("At 09:00 on Monday through Friday")
    expect(row).to_contain_text("Active")
    with transaction() as session:
        made = session.scalars(select(Schedule).where(Schedule.external_id == "team-standup")
                               ).one()
    row.get_by_role("link", name=f"Edit {made.id}").click()
    page.get_by_label("Cron").fill("*/15 * * * *")
    expect(page.locator("[data-cron-description]")).to_have_text(
        "Every 15th minute of every hour")
    page.get_by_role("button", name="Save schedule").click()
    expect(row).to_contain_text("*/15 * * * *")

    row.get_by_role("button", name=f"Deactivate {made.id}").click()
    expect(row).to_contain_text("Inactive")
    row.get_by_role("button", name=f"Activate {made.id}").click()
    expect(row).to_contain_text("Active")
    row.get_by_role("button", name=f"Delete {made.id}").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete schedule").click()
    expect(page.get_by_role("row").filter(has_text="team-standup")).to_have_count(0)
    with transaction() as session:
        assert session.get(Schedule, made.id) is None
