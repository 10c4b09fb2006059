"""Waitpoints and waiting runs in the dashboard over plain HTTP (the browser tests are in
tests/api/dashboard/test_waitpoints.py): rows built in Postgres, no worker."""

from __future__ import annotations

import re
from typing import Any

from reprise_server.shared.db import transaction
from reprise_server.shared.durable.models import Waitpoint
from reprise_server.shared.runs.models import Run
from tests.api.test_dashboard_queues import sign_in
from tests.support.durable_rows import new_token, stored, waiting_run
from tests.support.fixtures import ProjectKeys


def _token(token_id: str) -> Waitpoint:
    return stored(Waitpoint, token_id)


def _status(run_id: str) -> str:
    with transaction() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return str(run.status)


def test_an_environment_without_tokens_says_so(api: Any, project: ProjectKeys) -> None:
    sign_in(api, project)
    page = api.get("/dashboard/waitpoints?env=dev").text
    assert "No waitpoint token in this environment yet." in page
    assert 'href="/dashboard/waitpoints?env=dev">Waitpoints</a>' in page
    filtered = api.get("/dashboard/waitpoints?env=dev&status=COMPLETED").text
    assert "No token matches these filters." in filtered
    bad = api.get("/dashboard/waitpoints?env=dev&status=NOPE").text
    assert "Invalid status values: NOPE" in bad


def test_a_token_run_page_completes_its_token_and_the_run_is_queued(
    api: Any, project: ProjectKeys
) -> None:
    csrf = sign_in(api, project)
    token = new_token(project, tags=["approval"], timeout="1h")
    run_id = waiting_run(project, wait={"type": "token", "token": token}, waitpoints=[token])
    page = api.get(f"/dashboard/runs/{run_id}?env=dev").text
    assert "Waiting for a token" in page
    assert token in page
    assert "Complete token" in page
    assert 'data-kind="wait"' in page
    assert 'data-kind="step"' in page

    refused = api.post(f"/dashboard/waitpoints/{token}/complete",
                       data={"csrf_token": csrf, "env": "dev", "data": "{nope",
                             "run": run_id, "back": f"/dashboard/runs/{run_id}?env=dev"},
                       follow_redirects=False)
    assert refused.status_code == 400
    assert "Data is not valid JSON" in refused.text
    assert _token(token).status == "WAITING"

    done = api.post(f"/dashboard/waitpoints/{token}/complete",
                    data={"csrf_token": csrf, "env": "dev", "data": '{"approved": true}',
                          "run": run_id, "back": f"/dashboard/runs/{run_id}?env=dev"},
                    follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == f"/dashboard/runs/{run_id}?env=dev"
    assert (_token(token).status, _token(token).output) == ("COMPLETED", {"approved": True})
    # Queued again (the session's worker, if one runs, may have taken it since).
    assert _status(run_id) != "WAITING"

    again = api.post(f"/dashboard/waitpoints/{token}/complete",
                     data={"csrf_token": csrf, "env": "dev", "data": "{}"},
                     follow_redirects=False)
    assert again.status_code == 400
    assert "completed (or timed out) before" in again.text
    # From the run's page (the run no longer waits): the refusal shows on the page.
    again = api.post(f"/dashboard/waitpoints/{token}/complete",
                     data={"csrf_token": csrf, "env": "dev", "data": "{}", "run": run_id,
                           "back": f"/dashboard/runs/{run_id}?env=dev"},
                     follow_redirects=False)
    assert again.status_code == 400
    assert "completed (or timed out) before" in again.text
    assert "Waiting for a token" not in again.text


def test_completing_needs_the_sessions_csrf_token(api: Any, project: ProjectKeys) -> None:
    sign_in(api, project)
    token = new_token(project)
    refused = api.post(f"/dashboard/waitpoints/{token}/complete",
                       data={"csrf_token": "forged", "env": "dev", "data": "{}"},
                       follow_redirects=False)
    assert refused.status_code == 403
    assert _token(token).status == "WAITING"


def test_the_list_filters_by_status_and_tag_and_pages(api: Any, project: ProjectKeys) -> None:
    csrf = sign_in(api, project)
    ids = [new_token(project, tags=["batch"]) for _ in range(27)]
    other = new_token(project, tags=["other"], idempotency_key="order-17")
    page = api.get("/dashboard/waitpoints?env=dev").text
    rows = re.findall(r'<tr data-token="(waitpoint_\w+)"', page)
    assert rows[0] == other
    assert len(rows) == 25
    older = re.search(r'href="([^"]+after=[^"]+)">Older', page)
    assert older is not None
    rest = api.get(older.group(1).replace("&amp;", "&")).text
    assert re.findall(r'<tr data-token="(waitpoint_\w+)"', rest) == ids[:3][::-1]
    assert "← Newer" in rest

    tagged = api.get("/dashboard/waitpoints?env=dev&tag=other").text
    assert re.findall(r'<tr data-token="(waitpoint_\w+)"', tagged) == [other]
    assert "order-17" in tagged
    api.post(f"/dashboard/waitpoints/{ids[0]}/complete",
             data={"csrf_token": csrf, "env": "dev", "data": "[1, 2]"})
    completed = api.get("/dashboard/waitpoints?env=dev&status=COMPLETED").text
    assert re.findall(r'<tr data-token="(waitpoint_\w+)"', completed) == [ids[0]]


def test_the_list_links_the_runs_waiting_for_a_token(api: Any, project: ProjectKeys) -> None:
    sign_in(api, project)
    token = new_token(project)
    run_id = waiting_run(project, steps=(), wait={"type": "token", "token": token},
                         waitpoints=[token], payload={"token": token})
    page = api.get("/dashboard/waitpoints?env=dev").text
    assert f'href="/dashboard/runs/{run_id}?env=dev"' in page


def test_the_runs_list_filters_waiting_runs_and_says_what_each_waits_for(
    api: Any, project: ProjectKeys
) -> None:
    sign_in(api, project)
    token = new_token(project)
    on_token = waiting_run(project, steps=(), wait={"type": "token", "token": token},
                           waitpoints=[token])
    on_time = waiting_run(project, "durable-steps", steps=("a",), wait_name="wait",
                          wait={"type": "datetime", "until": "2099-01-01T00:00:00+00:00"})
    page = api.get("/dashboard/runs?env=dev").text
    assert '<option value="WAITING">WAITING</option>' in page
    listed = api.get("/dashboard/runs?env=dev&status=WAITING").text
    assert set(re.findall(r'<tr data-run="(run_\w+)"', listed)) == {on_token, on_time}
    assert f"Waiting: for token {token}" in listed
    assert "Waiting: until 2099-01-01 00:00:00 UTC" in listed


def test_a_run_page_says_which_time_or_children_it_waits_for(
    api: Any, project: ProjectKeys
) -> None:
    from tests.support import triggers

    sign_in(api, project)
    on_time = waiting_run(project, "durable-steps", steps=("a",), wait_name="wait",
                          wait={"type": "datetime", "until": "2099-01-01T00:00:00+00:00"})
    page = api.get(f"/dashboard/runs/{on_time}?env=dev").text
    assert "Waiting for a time" in page
    assert re.search(r"<strong>Waiting</strong> at <span class=\"mono\">wait</span> since", page)
    assert "2099-01-01 00:00:00 UTC" in page

    children = [triggers.in_db(project, "durable-child", publish=False, delay="1h")
                for _ in range(2)]
    on_one = waiting_run(project, "durable-parent", steps=("before",),
                         wait_name="trigger_and_wait:durable-child",
                         wait={"type": "run", "runs": children[:1], "batch": False})
    one = api.get(f"/dashboard/runs/{on_one}?env=dev").text
    assert "Waiting for a child run" in one
    assert f'href="/dashboard/runs/{children[0]}?env=dev"' in one
    on_batch = waiting_run(project, "durable-batch", steps=(),
                           wait_name="batch_trigger_and_wait",
                           wait={"type": "run", "runs": children, "batch": True})
    batch = api.get(f"/dashboard/runs/{on_batch}?env=dev").text
    assert "Waiting for child runs" in batch
    rows = re.findall(r'<tr data-child="(run_\w+)">.*?badge \w+">(\w+)<', batch)
    assert rows == [(children[0], "DELAYED"), (children[1], "DELAYED")]
    # The attempts line counts the attempt max_attempts bounds, and says it paused.
    assert re.search(r"data-attempts>1 of \d+", batch)


def test_a_replay_from_a_step_the_record_lacks_is_refused_in_the_dialog(
    api: Any, project: ProjectKeys
) -> None:
    csrf = sign_in(api, project)
    run_id = waiting_run(project, "durable-steps", steps=("a",), wait_name="wait",
                         wait={"type": "datetime", "until": "2099-01-01T00:00:00+00:00"})
    page = api.get(f"/dashboard/runs/{run_id}?env=dev").text
    assert '<option value="step:0">Step #0 a</option>' in page
    assert '<option value="step:1">Wait #1 wait</option>' in page
    refused = api.post(f"/dashboard/runs/{run_id}/replay",
                       data={"csrf_token": csrf, "env": "dev", "payload": "{}",
                             "start_from": "step:nope"}, follow_redirects=False)
    assert refused.status_code == 400
    assert "recorded no step &#39;nope&#39;" in refused.text
    assert 'value="step:0">' in refused.text
    odd = api.post(f"/dashboard/runs/{run_id}/replay",
                   data={"csrf_token": csrf, "env": "dev", "payload": "{}",
                         "start_from": "middle"}, follow_redirects=False)
    assert odd.status_code == 400
    assert "Start from: unknown choice" in odd.text
