"""The runs list in a real browser at a laptop's size: its icon, the error of each failed
run, the filter bar on one line, and an empty result that says why it is empty."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for_status
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


@pytest.fixture
def laptop(signed_in: Any) -> Any:
    signed_in.set_viewport_size({"width": 1280, "height": 800})
    return signed_in


def test_the_pages_have_an_icon_and_load_nothing_missing(laptop: Any) -> None:
    page = laptop
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    page.goto("/dashboard/runs")
    page.wait_for_load_state("networkidle")
    assert missing == []
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon is not None
    for url in (icon, "/favicon.ico"):
        served = page.request.get(url)
        assert served.status == 200, url
        assert served.headers["content-type"].startswith("image/svg+xml")
        assert served.text().startswith("<svg")


def test_apply_filters_stays_on_one_line_at_1280_pixels(laptop: Any) -> None:
    page = laptop
    page.goto("/dashboard/runs")
    apply = page.get_by_role("button", name="Apply filters").bounding_box()
    one_line = page.get_by_role("button", name="Bulk action").bounding_box()
    assert apply is not None
    assert one_line is not None
    assert apply["height"] <= one_line["height"] + 1, (apply, one_line)


def test_a_failed_run_shows_its_error_name_and_first_line(
    laptop: Any, dashboard: LiveServer, project: ProjectKeys, celery_worker: Any
) -> None:
    expect = _expect()
    failed = triggers.via_live_server(dashboard, project, "test-fail-until", maxAttempts=1)
    wait_for_status(failed, "FAILED")
    done = triggers.via_live_server(dashboard, project)
    wait_for_status(done, "COMPLETED")
    page = laptop
    page.goto("/dashboard/runs")
    expect(page.get_by_role("columnheader", name="Error")).to_be_visible()
    cell = page.locator(f"tr[data-run='{failed}'] td.error-cell")
    expect(cell.locator(".error-name")).to_have_text("ValueError")
    expect(cell.locator(".error-line")).to_contain_text("failing attempt 1")
    expect(page.locator(f"tr[data-run='{done}'] td.error-cell")).to_be_empty()


def test_an_empty_filtered_list_says_the_filters_match_nothing(laptop: Any) -> None:
    expect = _expect()
    page = laptop
    page.goto("/dashboard/runs?tag=no-run-has-this-tag")
    expect(page.locator("td.empty")).to_have_text("No runs match these filters.")
