"""The dashboard's one-time sign-in link over plain HTTP: opening it (a GET) spends
nothing and signs nobody in; only its page's button (a POST with the page's CSRF token)
does, once. (The browser tests in tests/api/dashboard drive the same link in Chromium.)"""

from __future__ import annotations

import re
from typing import Any

from reprise_server.shared.db import transaction
from reprise_server.shared.sessions.service import create_sign_in_link
from tests.support.fixtures import ProjectKeys


def _link(project: ProjectKeys) -> str:
    with transaction() as session:
        return f"/dashboard/sign-in/{create_sign_in_link(session, project.keys['dev'])}"


def _csrf(page: Any) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def test_opening_the_link_spends_nothing_and_its_button_signs_in_once(
    api: Any, project: ProjectKeys
) -> None:
    link = _link(project)
    for _ in range(2):  # a link preview, a mail scanner, then the person
        shown = api.get(link, follow_redirects=False)
        assert shown.status_code == 200
        assert "reprise_session" not in shown.headers.get("set-cookie", "")
    signed = api.post(link, data={"csrf_token": _csrf(shown)}, follow_redirects=False)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/dashboard/runs"
    assert "reprise_session=" in signed.headers["set-cookie"]
    again = api.post(link, data={"csrf_token": _csrf(api.get(link))}, follow_redirects=False)
    assert again.status_code == 404
    assert "already used" in again.text


def test_the_links_button_without_its_pages_csrf_token_is_refused_and_spends_nothing(
    api: Any, project: ProjectKeys
) -> None:
    link = _link(project)
    api.cookies.clear()
    assert api.post(link, data={"csrf_token": "forged"}, follow_redirects=False).status_code == 403
    shown = api.get(link)
    assert api.post(link, data={"csrf_token": "forged"}, follow_redirects=False).status_code == 403
    # Refused twice, still unspent: the real button signs in.
    signed = api.post(link, data={"csrf_token": _csrf(shown)}, follow_redirects=False)
    assert signed.status_code == 303
