"""The Queues page in a real browser: each limit and queue with its numbers, the actions
through their confirmation dialogs (the database changed), and a held-back run saying why
it waits. The runs are of ``dash-limited`` (tests/support/tasks.py), holding the named
limit ``dash-shared`` (total 1): while one executes (held on its gate) the next waits."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.dashboard.conftest import screenshot
from tests.support import tasks, triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for, wait_for_status

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

LIMITED = "dash-limited"
SHARED = "dash-shared"
REASON = f"1 of 1 running under limit `{SHARED}`"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


@pytest.fixture
def holding(project: ProjectKeys, celery_worker: Any) -> Iterator[tuple[str, str]]:
    """One run executing with the slot of ``dash-shared``, a second waiting for it; both
    let go at the end."""
    name = f"dash-{secrets.token_hex(4)}"
    first = triggers.in_db(project, LIMITED, payload={"gate": name})
    try:
        wait_for_status(first, "EXECUTING")
        second = triggers.in_db(project, LIMITED, payload={"gate": name})
        assert run_row(second).admission == "waiting"
        yield first, second
    finally:
        tasks.gate(name).set()


def _limit(project: ProjectKeys, name: str) -> dict[str, Any]:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.flow import limits

    with transaction() as session:
        return limits.retrieve(session, project.environment_ids["dev"], name)


def _queue_paused(project: ProjectKeys, name: str) -> bool:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.flow.models import Queue

    with transaction() as session:
        return bool(session.scalar(select(Queue.paused).where(
            Queue.environment_id == project.environment_ids["dev"], Queue.name == name)))


def test_a_held_back_run_says_why_on_its_page_and_in_the_list(
    signed_in: Any, holding: tuple[str, str]
) -> None:
    expect = _expect()
    first, second = holding
    page = signed_in
    page.goto("/dashboard/runs?env=dev")
    expect(page.locator(f"tr[data-run='{second}'] [data-waiting-reason]")).to_have_text(
        f"Waiting: {REASON}")
    expect(page.locator(f"tr[data-run='{first}'] [data-waiting-reason]")).to_have_count(0)
    page.get_by_role("link", name=second).click()
    expect(page.get_by_role("status", name="Why it waits")).to_contain_text(REASON)
    page.goto(f"/dashboard/runs/{first}?env=dev")
    expect(page.get_by_role("heading", name=re.compile(LIMITED))).to_contain_text("EXECUTING")
    expect(page.get_by_role("status", name="Why it waits")).to_have_count(0)


def test_queues_page_numbers_and_its_actions_through_their_dialogs(
    signed_in: Any, project: ProjectKeys, holding: tuple[str, str]
) -> None:
    expect = _expect()
    _first, second = holding
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Queues").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Queues dev")

    shared = page.locator(f"tr[data-limit='{SHARED}']")
    expect(shared.locator("[data-cell=running]")).to_have_text("1 / 1")
    expect(shared.locator("[data-cell=per-key]")).to_have_text("∞")
    expect(shared.locator("[data-cell=queued]")).to_have_text("1")
    expect(shared.locator("[data-cell=oldest]")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(shared).to_contain_text("Active")
    own = page.locator(f"tr[data-limit='task/{LIMITED}']")
    expect(own.locator("[data-cell=running]")).to_have_text("1 / 3")
    expect(own.locator("[data-cell=per-key]")).to_have_text("2")
    queue = page.locator(f"tr[data-queue='task/{LIMITED}']")
    expect(queue.locator("[data-cell=running]")).to_have_text("1 / 3")
    expect(queue.locator("[data-cell=queued]")).to_have_text("1")
    expect(queue.locator("[data-cell=oldest]")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(page.locator("tr[data-queue='task/test-echo'] [data-cell=running]")).to_have_text(
        "0 / ∞")
    screenshot(page, "queues")

    # Pause, confirmed; the limit shows it and the database says so.
    dialog = page.get_by_role("dialog")
    shared.get_by_role("button", name=f"Pause limit {SHARED}").click()
    expect(dialog).to_contain_text(f"Pause limit {SHARED}?")
    assert _limit(project, SHARED)["paused"] is False  # asking changes nothing
    dialog.get_by_role("button", name="Pause limit").click()
    expect(shared).to_contain_text("Paused")
    assert _limit(project, SHARED)["paused"] is True
    shared.get_by_role("button", name=f"Resume limit {SHARED}").click()
    dialog.get_by_role("button", name="Resume limit").click()
    expect(shared).to_contain_text("Active")
    assert _limit(project, SHARED)["paused"] is False

    # Override: a refused value is shown in the dialog and nothing is written.
    shared.get_by_role("button", name=f"Override limit {SHARED}").click()
    dialog.get_by_label("Total").fill("lots")
    dialog.get_by_role("button", name="Override limit").click()
    expect(dialog.get_by_role("alert")).to_contain_text("Total must be a whole number")
    assert _limit(project, SHARED)["total"]["override"] is None
    dialog.get_by_label("Total").fill("2")
    screenshot(page, "queues-override")
    dialog.get_by_role("button", name="Override limit").click()
    # The new bound; the waiting run is admitted at once.
    expect(shared.locator("[data-cell=running]")).to_contain_text("/ 2")
    expect(shared.locator("[data-cell=running]")).to_contain_text("overridden · declared 1")
    assert _limit(project, SHARED)["total"]["current"] == 2
    wait_for(lambda: run_row(second).admission is None, what="the waiting run admitted")
    page.reload()
    expect(shared.locator("[data-cell=running]")).to_contain_text("2 / 2")
    expect(shared.locator("[data-cell=queued]")).to_have_text("0")

    # Reset to the declared bound.
    shared.get_by_role("button", name=f"Reset limit {SHARED}").click()
    expect(dialog).to_contain_text("declared bounds: total 1")
    dialog.get_by_role("button", name="Reset limit").click()
    expect(shared.locator("[data-cell=running]")).to_have_text("2 / 1")
    expect(shared.get_by_role("button", name=f"Reset limit {SHARED}")).to_have_count(0)
    assert _limit(project, SHARED)["total"]["override"] is None

    # A queue: pause and resume.
    queue.get_by_role("button", name=f"Pause queue task/{LIMITED}").click()
    expect(dialog).to_contain_text(f"Pause queue task/{LIMITED}?")
    dialog.get_by_role("button", name="Pause queue").click()
    expect(queue).to_contain_text("Paused")
    assert _queue_paused(project, f"task/{LIMITED}") is True
    queue.get_by_role("button", name=f"Resume queue task/{LIMITED}").click()
    dialog.get_by_role("button", name="Resume queue").click()
    expect(queue).to_contain_text("Active")
    assert _queue_paused(project, f"task/{LIMITED}") is False
