"""The dashboard's Queues page over plain HTTP, the waiting reasons of held-back runs (one
look-up for a whole page of runs) and the flow gauges on ``/metrics``. The browser tests
in tests/api/dashboard/test_queues.py drive the same page in Chromium.

The runs are of ``dash-limited`` (tests/support/tasks.py): its own limit (total 3, per key
2) and the named limit ``dash-shared`` (total 1), so while one run executes (held on its
gate) the next waits in the line."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from reprise_server.shared.db import transaction
from reprise_server.shared.flow import limits
from reprise_server.shared.flow.models import Queue
from tests.api.test_metrics import scrape, value
from tests.support import tasks, triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for_status

LIMITED = "dash-limited"
SHARED = "dash-shared"


def sign_in(api: Any, project: ProjectKeys) -> str:
    """Sign the client in with the dev key; the session's CSRF token."""
    form = api.get("/dashboard/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    signed = api.post("/dashboard/sign-in", data={"csrf_token": token.group(1),
                                                  "secret_key": project.keys["dev"]},
                      follow_redirects=False)
    assert signed.status_code == 303, signed.text
    return csrf(api.get("/dashboard/queues?env=dev").text)


def csrf(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found is not None, text
    return found.group(1)


def row(text: str, attribute: str, name: str) -> str:
    """The table row of a queue (``data-queue``) or limit (``data-limit``), as text."""
    found = re.search(rf'<tr {attribute}="{re.escape(name)}">(.*?)</tr>', text, re.DOTALL)
    assert found is not None, f"no row {attribute}={name}"
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))))


@pytest.fixture
def holding(project: ProjectKeys, celery_worker: Any) -> Iterator[tuple[str, str]]:
    """A run executing with the slot of ``dash-shared`` and a second one waiting for it;
    the first is let go at the end."""
    name = f"dash-{secrets.token_hex(4)}"
    first = triggers.in_db(project, LIMITED, payload={"gate": name})
    try:
        wait_for_status(first, "EXECUTING")
        second = triggers.in_db(project, LIMITED, payload={"gate": name})
        assert run_row(second).admission == "waiting"
        yield first, second
    finally:
        tasks.gate(name).set()


def test_the_page_shows_each_limit_and_queue_with_its_numbers_and_waits(
    api: Any, project: ProjectKeys, holding: tuple[str, str]
) -> None:
    first, second = holding
    sign_in(api, project)
    page = api.get("/dashboard/queues?env=dev")
    assert page.status_code == 200
    assert 'href="/dashboard/queues?env=dev">Queues</a>' in page.text  # the nav entry
    shared = row(page.text, "data-limit", SHARED)
    assert "1 / 1" in shared
    assert "Active" in shared
    assert re.search(r"1 / 1 ∞ 1 ", shared), shared  # running / total, per key, queued
    own = row(page.text, "data-limit", f"task/{LIMITED}")
    assert "1 / 3" in own
    assert " 2 " in own
    queue = row(page.text, "data-queue", f"task/{LIMITED}")
    assert "1 / 3" in queue  # a task queue's bound is its own limit's total
    # Something waits: an oldest wait in seconds (not "-").
    assert re.search(r"1 / 1 ∞ 1 \d+\.\d s", shared), shared

    tasks.gate(run_row(first).payload["gate"]).set()
    wait_for_status(second, "COMPLETED", timeout=30)
    after = api.get("/dashboard/queues?env=dev").text
    queue = row(after, "data-queue", f"task/{LIMITED}")
    assert re.search(r"0 / 3 0 - \d+\.\d s \d+\.\d s 2 dequeued", queue), queue
    shared = row(after, "data-limit", SHARED)
    assert re.search(r"0 / 1 ∞ 0 - \d+\.\d s \d+\.\d s 2 dequeued", shared), shared


def test_a_held_back_run_says_why_on_its_page_and_its_row(
    api: Any, project: ProjectKeys, holding: tuple[str, str]
) -> None:
    first, second = holding
    sign_in(api, project)
    reason = f"1 of 1 running under limit `{SHARED}`"
    run_page = api.get(f"/dashboard/runs/{second}?env=dev").text
    assert f"Waiting:</strong> {reason}" in html.unescape(run_page)
    assert "Waiting:" not in api.get(f"/dashboard/runs/{first}?env=dev").text
    rows = html.unescape(api.get("/dashboard/runs?env=dev").text)
    assert re.search(rf'data-run="{second}".*?Waiting: {re.escape(reason)}', rows, re.DOTALL)
    first_row = rows.split(f'<tr data-run="{first}"')[1].split("</tr>")[0]
    assert "Waiting" not in first_row


def _explained(ids: list[str]) -> tuple[dict[str, str], list[str]]:
    """The runs' waiting reasons and the statements reading them took."""
    from reprise_server.shared.dashboard import waiting_reasons
    from reprise_server.shared.db import session_factory
    from reprise_server.shared.runs.models import Run

    with session_factory()() as session:
        runs = list(session.scalars(select(Run).where(Run.id.in_(ids))))
        statements: list[str] = []
        connection = session.connection()

        def listener(*args: Any) -> None:
            statements.append(args[2])

        event.listen(connection, "before_cursor_execute", listener)
        try:
            return waiting_reasons(session, runs), statements
        finally:
            event.remove(connection, "before_cursor_execute", listener)


def test_a_page_of_runs_is_explained_in_at_most_two_queries(
    project: ProjectKeys
) -> None:
    """Runs held back by the line, a paused queue and an undeclared queue, and runs not held
    back: one query over the line and one over the queues, whatever their number."""
    env = project.environment_ids["dev"]
    # Not published; should a worker still get them, they hold on to their gate.
    name = f"dash-{secrets.token_hex(4)}"
    first = triggers.in_db(project, LIMITED, publish=False, payload={"gate": name})
    waiting = [triggers.in_db(project, LIMITED, publish=False, payload={"gate": name})
               for _ in range(5)]
    with transaction() as session:
        session.execute(Queue.__table__.update().where(
            Queue.environment_id == env, Queue.name == "task/test-echo").values(paused=True))
    parked = triggers.in_db(project, "test-echo", publish=False)
    nowhere = triggers.in_db(project, "test-echo", publish=False, queue="not-declared")
    plain = triggers.in_db(project, "test-sleep", publish=False)
    assert run_row(parked).admission == "paused"

    ids = [first, *waiting, parked, nowhere, plain]
    try:
        reasons, statements = _explained(ids)
    finally:
        tasks.gate(name).set()
    assert len(statements) <= 2, statements
    assert first not in reasons
    assert plain not in reasons
    for run_id in waiting:
        assert reasons[run_id] == f"1 of 1 running under limit `{SHARED}`"
    assert reasons[parked] == "queue `task/test-echo` paused"
    assert reasons[nowhere].startswith("no worker version declares queue `not-declared`")


def test_pause_resume_override_and_reset_through_their_dialogs(
    api: Any, project: ProjectKeys
) -> None:
    env = project.environment_ids["dev"]
    token = sign_in(api, project)
    base = {"csrf_token": token, "env": "dev"}
    # Each action is confirmed in a dialog first (a GET, which changes nothing).
    confirm = api.get(f"/dashboard/queues?env=dev&dialog=pause-limit&limit={SHARED}")
    assert confirm.status_code == 200
    assert f"Pause limit {SHARED}?" in confirm.text
    with transaction() as session:
        assert limits.retrieve(session, env, SHARED)["paused"] is False

    done = api.post("/dashboard/limits/pause", data={**base, "limit": SHARED},
                    follow_redirects=False)
    assert done.status_code == 303
    assert "Paused" in row(api.get("/dashboard/queues?env=dev").text, "data-limit", SHARED)
    with transaction() as session:
        assert limits.retrieve(session, env, SHARED)["paused"] is True
    api.post("/dashboard/limits/resume", data={**base, "limit": SHARED})
    with transaction() as session:
        assert limits.retrieve(session, env, SHARED)["paused"] is False

    # Override: refused values are shown in the dialog and nothing is written.
    for fields, message in (
        ({"total": "two"}, "Total must be a whole number"),
        ({"perKey": "-1"}, "Per key must be a whole number"),
        ({"total": "100001"}, "Total must be a whole number from 0 to 100000"),
        ({}, "Give a total, a per-key bound, or both"),
    ):
        refused = api.post("/dashboard/limits/override", data={**base, "limit": SHARED, **fields})
        assert refused.status_code == 400
        assert message in html.unescape(refused.text)
        assert 'role="alert"' in refused.text
        assert "<dialog" in refused.text
    with transaction() as session:
        assert limits.retrieve(session, env, SHARED)["total"]["override"] is None
    unknown = api.post("/dashboard/limits/override",
                       data={**base, "limit": "no-such-limit", "total": "2"})
    assert unknown.status_code == 404
    assert "Concurrency limit not found" in unknown.text

    api.post("/dashboard/limits/override", data={**base, "limit": SHARED, "total": "4",
                                                 "perKey": "2"})
    shown = row(api.get("/dashboard/queues?env=dev").text, "data-limit", SHARED)
    assert "0 / 4 overridden · declared 1" in shown, shown
    with transaction() as session:
        item = limits.retrieve(session, env, SHARED)
    assert (item["total"]["current"], item["perKey"]["current"]) == (4, 2)
    api.post("/dashboard/limits/reset", data={**base, "limit": SHARED})
    shown = row(api.get("/dashboard/queues?env=dev").text, "data-limit", SHARED)
    assert "0 / 1 ∞" in shown, shown
    assert "overridden" not in shown, shown

    # A queue, by its id.
    with transaction() as session:
        queue_id = session.scalar(select(Queue.id).where(
            Queue.environment_id == env, Queue.name == f"task/{LIMITED}"))
    confirm = api.get(f"/dashboard/queues?env=dev&dialog=pause-queue&queue={queue_id}")
    assert f"Pause queue task/{LIMITED}?" in confirm.text
    api.post("/dashboard/queues/pause", data={**base, "queue": queue_id})
    assert "Paused" in row(api.get("/dashboard/queues?env=dev").text, "data-queue",
                           f"task/{LIMITED}")
    with transaction() as session:
        assert session.scalar(select(Queue.paused).where(Queue.id == queue_id)) is True
    api.post("/dashboard/queues/resume", data={**base, "queue": queue_id})
    with transaction() as session:
        assert session.scalar(select(Queue.paused).where(Queue.id == queue_id)) is False

    # Without the session's CSRF token nothing is done.
    forged = api.post("/dashboard/limits/pause", data={"csrf_token": "forged", "env": "dev",
                                                       "limit": SHARED})
    assert forged.status_code == 403
    with transaction() as session:
        assert limits.retrieve(session, env, SHARED)["paused"] is False


def test_limit_and_queue_gauges(api: Any, project: ProjectKeys, holding: tuple[str, str]
                                ) -> None:
    samples = scrape(api)
    labels = {"project": project.slug, "environment": "dev"}
    shared = {**labels, "limit": SHARED}
    own = {**labels, "limit": f"task/{LIMITED}"}
    queue = {**labels, "queue": f"task/{LIMITED}"}
    assert value(samples, "reprise_concurrency_limit_running", **shared) == 1
    assert value(samples, "reprise_concurrency_limit_queued", **shared) == 1
    assert value(samples, "reprise_concurrency_limit_bound", **shared) == 1
    assert value(samples, "reprise_concurrency_limit_bound", **own) == 3
    assert value(samples, "reprise_concurrency_limit_paused", **shared) == 0
    assert value(samples, "reprise_concurrency_limit_oldest_wait_seconds", **shared) > 0
    assert value(samples, "reprise_run_queue_running", **queue) == 1
    assert value(samples, "reprise_run_queue_queued", **queue) == 1
    assert value(samples, "reprise_run_queue_bound", **queue) == 3
    assert value(samples, "reprise_run_queue_paused", **queue) == 0
    assert value(samples, "reprise_run_queue_oldest_wait_seconds", **queue) > 0
    # An unbounded one has no bound series; a named queue has no bound.
    echo = {**labels, "queue": "task/test-echo"}
    assert value(samples, "reprise_run_queue_running", **echo) == 0
    assert not [k for k in samples if k[0] == "reprise_run_queue_bound"
                and ("queue", "task/test-echo") in k[1] and ("project", project.slug) in k[1]]
    with transaction() as session:
        limits.set_paused(session, project.environment_ids["dev"], SHARED, True)
    assert value(scrape(api), "reprise_concurrency_limit_paused", **shared) == 1
