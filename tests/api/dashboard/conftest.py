"""The dashboard in a real browser: Playwright for Python driving the system's Chromium
(Debian's ``chromium``; ``.ci/run`` installs it), against a live API in a subprocess whose
runs the session's in-process worker executes. Skipped, with the reason, where there is no
Chromium or no Playwright: browsers are never downloaded.

``REPRISE_DASHBOARD_SCREENSHOTS=docs`` saves screenshots of the main pages there (the
README shows them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import ProjectKeys
from tests.support.live_server import ROOT, LiveServer, live_api

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    explicit = os.environ.get("REPRISE_CHROMIUM")
    if explicit:
        return explicit
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


# Module scope: while Playwright's sync API runs, the thread has an event loop running, so
# later tests calling asyncio.run() would fail; it stops with the dashboard's tests.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium); "
                    "the dashboard's browser tests need one")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def dashboard() -> Iterator[LiveServer]:
    with live_api() as server:
        yield server


@pytest.fixture
def context(browser: Any, dashboard: LiveServer) -> Iterator[Any]:
    ctx = browser.new_context(base_url=dashboard.base_url, viewport={"width": 1360, "height": 900})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


def sign_in(page: Any, secret: str) -> None:
    page.goto("/dashboard/sign-in")
    page.get_by_label("Secret key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dashboard/runs**")


@pytest.fixture
def signed_in(context: Any, project: ProjectKeys) -> Any:
    """A page signed in with the project's dev key."""
    page = context.new_page()
    sign_in(page, project.keys["dev"])
    return page


def screenshot(page: Any, name: str, *, dark: bool = False) -> None:
    """Save the page (and, with ``dark``, its dark-scheme twin) when asked to."""
    target = os.environ.get("REPRISE_DASHBOARD_SCREENSHOTS")
    if target:
        folder = Path(target) if Path(target).is_absolute() else ROOT / target
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"dashboard-{name}.png"), full_page=False)
        if dark:
            page.emulate_media(color_scheme="dark")
            page.screenshot(path=str(folder / f"dashboard-{name}-dark.png"), full_page=False)
            page.emulate_media(color_scheme="light")
