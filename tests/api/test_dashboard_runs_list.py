"""Empty states over plain HTTP: the runs list says why it is empty, and a run page says
“yet” only while the run may still execute."""

from __future__ import annotations

from typing import Any

from tests.api.test_dashboard_queues import sign_in
from tests.support.fixtures import ProjectKeys


def test_an_environment_without_runs_says_so_and_how_to_start_one(
    api: Any, project: ProjectKeys
) -> None:
    sign_in(api, project)
    page = api.get("/dashboard/runs?env=dev").text
    assert "No runs in dev yet: trigger one with" in page
    assert "No runs match" not in page
    filtered = api.get("/dashboard/runs?env=dev&task=nothing-by-this-name").text
    assert "No runs match these filters." in filtered


def test_a_run_page_says_yet_only_while_the_run_may_still_execute(
    api: Any, project: ProjectKeys
) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs import lifecycle
    from tests.support import triggers

    sign_in(api, project)
    delayed = triggers.in_db(project, "test-echo", publish=False, delay="1h")
    canceled = triggers.in_db(project, "test-echo", publish=False, delay="1h")
    with transaction() as session:
        assert lifecycle.cancel(session, canceled)
    waiting = api.get(f"/dashboard/runs/{delayed}?env=dev").text
    assert "No attempt yet." in waiting
    assert "No output yet." in waiting
    ended = api.get(f"/dashboard/runs/{canceled}?env=dev").text
    assert "No attempt: the run ended before one started." in ended
    assert "No output." in ended


def test_not_replayed_yet_leaves_out_runs_whose_replay_completed_or_is_under_way(
    api: Any, project: ProjectKeys
) -> None:
    from reprise_server.shared.commands.schemas import ReplayRequest
    from reprise_server.shared.commands.service import accept_replay, apply_command
    from reprise_server.shared.dashboard import run_head
    from reprise_server.shared.db import transaction
    from reprise_server.shared.projects.service import AuthContext
    from tests.support import triggers

    sign_in(api, project)
    replayed = triggers.in_db(project, "test-echo", publish=False, delay="1h")
    never = triggers.in_db(project, "test-echo", publish=False, delay="1h")
    auth = AuthContext(project.project_id, project.environment_ids["dev"], "dev")
    with transaction() as session:  # a replay still under way (delayed)
        accepted = accept_replay(session, auth, run_head(session, auth, replayed),
                                 ReplayRequest.model_validate({"delay": "1h"}), publish=False)
        assert accepted.id is not None
        apply_command(session, accepted.id, "test")
    page = api.get("/dashboard/runs?env=dev&not_replayed=1").text
    assert 'id="f-not-replayed" name="not_replayed" type="checkbox" value="1" checked' in page
    assert never in page
    assert accepted.target_run_id in page  # itself never replayed
    assert f'href="/dashboard/runs/{replayed}' not in page
