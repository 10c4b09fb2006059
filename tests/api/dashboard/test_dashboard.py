"""The dashboard in a real browser, found by the accessible names docs/dashboard.md uses."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.dashboard.conftest import screenshot, sign_in
from tests.support import triggers
from tests.support.commands import count
from tests.support.fixtures import ProjectKeys, run_row, wait_for, wait_for_status
from tests.support.live_server import LiveServer
from tests.support.schedules import clean_schedules  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _api(dashboard: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=dashboard.base_url, timeout=15)


def _failed(dashboard: LiveServer, project: ProjectKeys, **options: Any) -> str:
    run_id = triggers.via_live_server(
        dashboard, project, "test-fail-until", maxAttempts=1, **options
    )
    wait_for_status(run_id, "FAILED")
    return run_id


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def test_sign_in_with_a_secret_key_then_sign_out(
    context: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    page = context.new_page()
    page.goto("/dashboard/runs")
    page.wait_for_url("**/dashboard/sign-in**")
    page.get_by_label("Secret key").fill("tr_dev_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    screenshot(page, "sign-in")

    sign_in(page, project.keys["dev"])

    expect(page.get_by_role("heading", name=re.compile("Runs"))).to_be_visible()
    headers = page.request.get("/dashboard/runs").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    cookie = next(c for c in context.cookies() if c["name"] == "reprise_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/dashboard/sign-in")
    page.goto("/dashboard/runs")
    page.wait_for_url("**/dashboard/sign-in**")


def test_filter_the_list_to_failed_runs_and_open_one(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    failed = _failed(dashboard, project, tags=["nightly"])
    done = triggers.via_live_server(dashboard, project)
    wait_for_status(done, "COMPLETED")
    page = signed_in
    page.reload()
    expect(page.locator(f"tr[data-run='{done}']")).to_be_visible()

    page.get_by_label("Status").select_option("FAILED")
    page.get_by_role("button", name="Apply filters").click()

    expect(page.locator(f"tr[data-run='{failed}']")).to_be_visible()
    expect(page.locator(f"tr[data-run='{done}']")).to_have_count(0)
    assert "status=FAILED" in page.url
    screenshot(page, "runs")
    page.get_by_role("link", name=failed).click()
    expect(page.get_by_role("heading", name=re.compile("test-fail-until"))).to_contain_text("FAILED")
    expect(page.get_by_text("failing attempt 1").first).to_be_visible()


def test_replay_with_an_edited_payload_into_another_environment(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    original = triggers.via_live_server(dashboard, project, payload={"user": "ada"})
    wait_for_status(original, "COMPLETED")
    page = signed_in
    page.goto(f"/dashboard/runs/{original}")

    page.get_by_role("button", name="Replay", exact=True).click()
    dialog = page.get_by_role("dialog")
    payload = dialog.get_by_role("textbox", name="Payload")
    expect(payload).to_have_value(re.compile('"user": "ada"'))
    payload.fill('{"user": "grace", "retry": true}')
    dialog.get_by_role("combobox", name="Environment").select_option("staging")
    screenshot(page, "replay-dialog")
    dialog.get_by_role("button", name="Replay run").click()

    page.wait_for_url(re.compile(r"/dashboard/runs/run_\w+\?env=staging"))
    new_id = re.search(r"/runs/(run_\w+)", page.url).group(1)  # type: ignore[union-attr]
    assert new_id != original
    expect(page.get_by_text('"grace"').first).to_be_visible()
    replayed = run_row(new_id)
    assert replayed.environment_id == project.environment_ids["staging"]
    assert replayed.payload == {"user": "grace", "retry": True}
    assert replayed.replayed_from == original
    page.get_by_role("link", name=original).click()
    page.wait_for_url(f"**/dashboard/runs/{original}?env=dev")
    lineage = page.get_by_role("region", name="Lineage")
    expect(lineage.get_by_role("link", name=new_id)).to_be_visible()
    screenshot(page, "run", dark=True)


def test_an_invalid_payload_is_refused_in_the_dialog_and_nothing_is_written(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    original = triggers.via_live_server(dashboard, project)
    wait_for_status(original, "COMPLETED")
    page = signed_in
    page.goto(f"/dashboard/runs/{original}")
    page.get_by_role("button", name="Replay", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("textbox", name="Payload").fill('{"user": ')

    dialog.get_by_role("button", name="Replay run").click()
    expect(dialog.get_by_text("Not valid JSON")).to_be_visible()
    # The server refuses it too (a browser without the script sends it).
    page.evaluate("document.querySelector('form[data-json-form]').submit()")
    page.wait_for_load_state()
    expect(page.get_by_role("dialog").get_by_role("alert")).to_contain_text(
        "Payload is not valid JSON")
    assert count("commands") == 0


def test_a_payload_json_cannot_carry_is_refused_naming_where_and_nothing_is_written(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    """NaN is JavaScript's, not JSON's: Python's parser reads it, Postgres cannot store it."""
    expect = _expect()
    original = triggers.via_live_server(dashboard, project)
    wait_for_status(original, "COMPLETED")
    page = signed_in
    page.goto(f"/dashboard/runs/{original}")
    page.get_by_role("button", name="Replay", exact=True).click()
    page.get_by_role("dialog").get_by_role("textbox", name="Payload").fill('{"user": NaN}')
    page.evaluate("document.querySelector('form[data-json-form]').submit()")
    page.wait_for_load_state()
    expect(page.get_by_role("dialog").get_by_role("alert")).to_contain_text(
        "Payload: user is NaN, which JSON cannot carry")
    assert count("commands") == 0


def test_reschedule_a_delayed_run_and_a_run_no_longer_delayed_is_refused(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    delayed = triggers.via_live_server(dashboard, project, delay="1h")
    page = signed_in
    page.goto(f"/dashboard/runs/{delayed}")

    page.get_by_role("button", name="Reschedule").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("textbox", name="Delay").fill("3h")
    dialog.get_by_role("button", name="Reschedule run").click()

    page.wait_for_url(f"**/dashboard/runs/{delayed}?env=dev")
    due = run_row(delayed).delayed_until
    assert timedelta(hours=2.9) < due - datetime.now(UTC) < timedelta(hours=3.1)
    commands = page.get_by_role("region", name="Commands")
    expect(commands.get_by_role("cell", name="reschedule", exact=True)).to_be_visible()

    page.get_by_role("button", name="Reschedule").click()
    page.get_by_role("dialog").get_by_role("textbox", name="Delay").fill("5h")
    with _api(dashboard) as client:  # meanwhile the run is canceled
        client.post(f"/api/v2/runs/{delayed}/cancel", headers=project.headers())
    page.get_by_role("dialog").get_by_role("button", name="Reschedule run").click()
    expect(page.get_by_role("dialog").get_by_role("alert")).to_have_text(
        "Cannot reschedule a run that is not delayed")
    assert run_row(delayed).delayed_until == due


def test_without_the_script_the_buttons_open_the_dialogs_server_side(
    browser: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    delayed = triggers.via_live_server(dashboard, project, delay="1h")
    context = browser.new_context(base_url=dashboard.base_url, java_script_enabled=False)
    page = context.new_page()
    sign_in(page, project.keys["dev"])
    page.goto(f"/dashboard/runs/{delayed}")

    page.get_by_role("button", name="Reschedule").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("textbox", name="Delay").fill("2h")
    dialog.get_by_role("button", name="Reschedule run").click()

    page.wait_for_url(f"**/dashboard/runs/{delayed}?env=dev")
    expect(page.get_by_role("dialog")).to_have_count(0)
    context.close()
    due = run_row(delayed).delayed_until
    assert timedelta(hours=1.9) < due - datetime.now(UTC) < timedelta(hours=2.1)


def test_cancel_a_queued_run_after_confirming(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    queued = triggers.via_live_server(dashboard, project, queue="nobody-serves-this")
    wait_for_status(queued, "QUEUED")
    page = signed_in
    page.goto(f"/dashboard/runs/{queued}")

    page.get_by_role("button", name="Cancel run").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("Cancel")
    confirm.get_by_role("button", name="Cancel run").click()

    page.wait_for_url(f"**/dashboard/runs/{queued}?env=dev")
    assert run_row(queued).status == "CANCELED"
    expect(page.get_by_role("heading", name=re.compile("test-echo"))).to_contain_text("CANCELED")


def test_bulk_replay_by_filter_shows_its_progress_to_completion(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reprise_server.shared.settings import get_settings

    expect = _expect()
    monkeypatch.setattr(get_settings(), "bulk_batch_size", 1)  # the worker's: one run a batch
    failed = [_failed(dashboard, project, tags=["after-fix"]) for _ in range(3)]
    page = signed_in
    page.goto("/dashboard/runs?status=FAILED&tag=after-fix")

    page.get_by_role("button", name="Bulk action").click()
    expect(page.get_by_role("status")).to_contain_text("This will act on 3 runs")
    page.get_by_label("Replay each run").check()
    page.get_by_label("Name").fill("Replay after the fix")
    screenshot(page, "bulk-new")
    page.get_by_role("button", name="Start bulk action").click()

    page.wait_for_url(re.compile(r"/dashboard/bulk/bulk_\w+"))
    expect(page.locator("[data-progress-text]")).to_have_text("3 of 3 processed", timeout=30_000)
    expect(page.locator("#bulk-progress .badge")).to_have_text("COMPLETED")
    screenshot(page, "bulk-progress")
    bulk_id = re.search(r"/bulk/(bulk_\w+)", page.url).group(1)  # type: ignore[union-attr]
    replays = wait_for(lambda: [r for r in failed if _replays(r)] == failed or None,
                       what="a replay of each failed run")
    assert replays
    page.get_by_role("link", name=re.compile("See the runs")).click()
    expect(page.locator("tbody#runs-rows tr[data-run]")).to_have_count(3)
    assert f"bulk={bulk_id}" in page.url


def _replays(run_id: str) -> int:
    from sqlalchemy import text

    from reprise_server.shared.db import transaction

    with transaction() as session:
        return int(session.execute(text("SELECT count(*) FROM runs WHERE replayed_from = :id"),
                                   {"id": run_id}).scalar_one())


def test_bulk_cancel_of_a_selection(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    chosen, other = (
        triggers.via_live_server(dashboard, project, delay="1h") for _ in range(2)
    )
    page = signed_in
    page.reload()
    page.get_by_role("checkbox", name=f"Select {chosen}").check()

    page.get_by_role("button", name="Bulk action").click()
    expect(page.get_by_role("status")).to_contain_text("This will act on 1 run")
    page.get_by_label("Cancel each run").check()
    page.get_by_role("button", name="Start bulk action").click()

    expect(page.locator("[data-progress-text]")).to_have_text("1 of 1 processed", timeout=30_000)
    assert run_row(chosen).status == "CANCELED"
    assert run_row(other).status == "DELAYED"


def test_without_the_session_or_with_a_wrong_csrf_token_a_form_is_refused(
    browser: Any, signed_in: Any, dashboard: LiveServer, project: ProjectKeys,
    celery_worker: Any,
) -> None:
    delayed = triggers.via_live_server(dashboard, project, delay="1h")
    page = signed_in

    forged = page.request.post(f"/dashboard/runs/{delayed}/cancel",
                               form={"csrf_token": "not-the-token", "env": "dev"})
    stranger = browser.new_context(base_url=dashboard.base_url)
    anonymous = stranger.request.post(f"/dashboard/runs/{delayed}/cancel",
                                      form={"csrf_token": "whatever", "env": "dev"})
    stranger.close()

    assert forged.status == 403
    assert "CSRF" in forged.text()
    assert anonymous.status == 401
    assert run_row(delayed).status == "DELAYED"


def test_a_revoked_keys_sessions_stop_working(
    signed_in: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.service import hash_key
    from reprise_server.shared.projects.service import revoke_key as revoke

    expect = _expect()
    page = signed_in
    with transaction() as session:
        from reprise_server.shared.projects import repository as projects_repo

        found = projects_repo.find_active_key(session, hash_key(project.keys["dev"]))
        assert found is not None
        assert revoke(session, found[0].id) == 1

    page.reload()

    page.wait_for_url("**/dashboard/sign-in**")
    expect(page.get_by_label("Secret key")).to_be_visible()


def test_a_one_time_sign_in_link_works_once(
    context: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.sessions.service import create_sign_in_link

    expect = _expect()
    with transaction() as session:
        token = create_sign_in_link(session, project.keys["dev"])
    page = context.new_page()

    # Opening the link (what a link preview or another site's page can do) spends nothing.
    page.goto(f"/dashboard/sign-in/{token}")
    page.goto(f"/dashboard/sign-in/{token}")
    page.get_by_role("button", name="Sign in with this link").click()
    page.wait_for_url("**/dashboard/runs")
    context.clear_cookies()
    page.goto(f"/dashboard/sign-in/{token}")
    page.get_by_role("button", name="Sign in with this link").click()

    expect(page.get_by_role("alert")).to_contain_text("already used")


def test_the_environment_switcher_shows_another_environment_of_the_project(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    prod_run = triggers.via_live_server(dashboard, project, env="prod", delay="1h")
    page = signed_in
    expect(page.locator(f"tr[data-run='{prod_run}']")).to_have_count(0)

    page.get_by_label("Shown environment").select_option("prod")

    page.wait_for_url("**/dashboard/runs?env=prod")
    expect(page.locator(f"tr[data-run='{prod_run}']")).to_be_visible()
    page.reload()
    expect(page.get_by_label("Shown environment")).to_have_value("prod")


def test_the_list_refreshes_live_while_runs_are_active(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    from tests.support.tasks import gate

    expect = _expect()
    blocked = triggers.via_live_server(
        dashboard, project, "test-block", payload={"gate": "live-list"}
    )
    assert gate("live-list:started").wait(15)
    page = signed_in
    page.reload()
    row = page.locator(f"tr[data-run='{blocked}']")
    expect(row.locator(".badge")).to_have_text("EXECUTING")

    gate("live-list:release").set()

    # No reload: the rows are fetched again while a run on the page is active.
    expect(row.locator(".badge")).to_have_text("COMPLETED", timeout=15_000)


def test_cursor_pages_and_the_row_menu_opens_the_replay_dialog(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    ids = [triggers.via_live_server(dashboard, project, delay="1h") for _ in range(27)]
    page = signed_in
    page.reload()
    rows = page.locator("tbody#runs-rows tr[data-run]")
    expect(rows).to_have_count(25)
    expect(rows.first).to_have_attribute("data-run", ids[-1])

    page.get_by_role("link", name="Older →").click()

    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-run", ids[1])
    page.get_by_role("link", name="← Newer").click()
    expect(rows).to_have_count(25)
    page.get_by_label(f"Actions for {ids[-1]}").click()
    page.get_by_role("link", name="Replay", exact=True).click()
    expect(page.get_by_role("dialog").get_by_role("button", name="Replay run")).to_be_visible()


def test_replay_from_a_checkpoint_starts_with_its_state(
    signed_in: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    original = triggers.via_live_server(
        dashboard, project, "test-checkpoints", payload={"count": 3}
    )
    wait_for_status(original, "COMPLETED")
    page = signed_in
    page.goto(f"/dashboard/runs/{original}")
    expect(page.get_by_role("region", name="Checkpoints")).to_contain_text("#3")

    page.get_by_role("button", name="Replay", exact=True).click()
    dialog = page.get_by_role("dialog")
    start = dialog.get_by_role("combobox", name="Start from")
    # The checkpoints by the attempt that saved them, after the beginning (no step recorded).
    expect(start.locator("optgroup")).to_have_attribute("label", "A checkpoint of attempt 1")
    start.select_option("checkpoint:2")
    expect(dialog.get_by_text("receives the checkpoint's saved state as its payload")).to_be_visible()
    dialog.get_by_role("button", name="Replay run").click()

    page.wait_for_url(re.compile(r"/dashboard/runs/run_\w+\?env=dev"))
    new_id = re.search(r"/runs/(run_\w+)", page.url).group(1)  # type: ignore[union-attr]
    replayed = run_row(new_id)
    assert replayed.payload == {"step": 2, "payload": {"count": 3}}
    assert replayed.debug_mode is True


@pytest.mark.usefixtures("clean_schedules")
def test_schedules_and_the_runs_their_ticks_created(signed_in: Any, project: ProjectKeys) -> None:
    """The environment's schedules with their next run, and a
    tick's run found from its schedule and linking back to it."""
    from tests.support.schedules import Scheduler, fire

    expect = _expect()
    scheduler = Scheduler(project)
    ticking = scheduler.create("0 9 * * *", timezone="Europe/Paris", externalId="user_7")
    quiet = scheduler.create("30 * * * *", deduplicationKey="quiet")
    scheduler.make_due(ticking)
    assert fire() == 1
    [(run_id, _tick, _payload)] = scheduler.runs(ticking)

    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedules").click()
    row = page.get_by_role("row").filter(has_text=ticking)
    expect(row).to_contain_text("0 9 * * *")
    expect(row).to_contain_text("Europe/Paris")
    expect(row).to_contain_text("user_7")
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("in ")  # its next run, relative
    expect(page.get_by_role("row").filter(has_text=quiet)).to_contain_text("30 * * * *")
    screenshot(page, "schedules")

    row.get_by_role("link", name="Runs").click()
    expect(page.locator(f"tr[data-run='{run_id}']")).to_be_visible()
    expect(page.locator("tbody tr[data-run]")).to_have_count(1)
    page.get_by_role("link", name=run_id).click()
    expect(page.get_by_text("Created by schedule")).to_contain_text(ticking)
