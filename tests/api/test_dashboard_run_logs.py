"""The run page's logs endpoint (``/dashboard/runs/{id}/logs.json``) and the page rendered
without the script, in process: the session's environment only, the filter from the query."""

from __future__ import annotations

from typing import Any

from tests.api.test_dashboard_queues import sign_in
from tests.support import triggers
from tests.support.fixtures import ProjectKeys
from tests.support.runlogs import add_line


def test_logs_json_reads_after_a_cursor_by_level_and_text(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    first = add_line(run_id, "starting", level="DEBUG")
    add_line(run_id, "it broke", level="ERROR", exception="Traceback\nKeyError: 'x'")
    assert api.get(f"/dashboard/runs/{run_id}/logs.json?env=dev").status_code == 401
    sign_in(api, project)

    body = api.get(f"/dashboard/runs/{run_id}/logs.json?env=dev").json()
    assert [line["message"] for line in body["lines"]] == ["starting", "it broke"]
    assert body["lines"][1]["exception"] == "Traceback\nKeyError: 'x'"
    assert (body["hasMore"], body["active"]) == (False, True)  # DELAYED: still to run
    after = api.get(f"/dashboard/runs/{run_id}/logs.json?env=dev&after={first}").json()
    assert [line["message"] for line in after["lines"]] == ["it broke"]
    tail = api.get(f"/dashboard/runs/{run_id}/logs.json?env=dev&after={body['after']}").json()
    assert (tail["lines"], tail["after"]) == ([], body["after"])
    errors = api.get(f"/dashboard/runs/{run_id}/logs.json?env=dev&level=ERROR").json()
    assert [line["message"] for line in errors["lines"]] == ["it broke"]
    found = api.get(f"/dashboard/runs/{run_id}/logs.json?env=dev&search=KEYERROR").json()
    assert [line["message"] for line in found["lines"]] == ["it broke"]
    refused = api.get(f"/dashboard/runs/{run_id}/logs.json?env=dev&level=LOUD")
    assert refused.status_code == 400
    assert "level must be one of" in refused.json()["error"]
    # Another environment's run is not found from this one.
    staging = triggers.via_api(api, project, env="staging", delay="1h")
    add_line(staging, "staging secret")
    other = api.get(f"/dashboard/runs/{staging}/logs.json?env=dev")
    assert (other.status_code, other.json()) == (404, {"error": "Run not found"})


def test_the_page_renders_the_filtered_lines_without_the_script(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    add_line(run_id, "plain line")
    add_line(run_id, "bad line", level="ERROR", exception="Traceback\nValueError: nope")
    sign_in(api, project)

    page = api.get(f"/dashboard/runs/{run_id}?env=dev&log_level=ERROR").text

    assert "bad line" in page
    assert "plain line" not in page
    assert '<details class="traceback" open>' in page
    assert "ValueError: nope" in page
    assert 'aria-label="Trace waterfall"' in page
    assert 'data-kind="queue"' not in page  # delayed: not queued yet
    assert 'data-kind="delay"' in page
