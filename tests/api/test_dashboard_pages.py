"""The dashboard's Tasks, Search, API keys and schedule editing over plain HTTP: what each
page shows, what each form writes, and that a refused form writes nothing. The browser
tests in tests/api/dashboard/test_pages.py drive the same pages in Chromium."""

from __future__ import annotations

import html
import re
import secrets
from typing import Any

import pytest
from sqlalchemy import select, text, update

from reprise_server.shared.db import transaction
from reprise_server.shared.projects.models import ApiKey
from reprise_server.shared.runs.models import Run
from reprise_server.shared.schedules.models import Schedule
from tests.api.test_dashboard_queues import sign_in
from tests.support import triggers
from tests.support.fixtures import ProjectKeys


def _row(page: str, attribute: str, name: str) -> str:
    found = re.search(rf'<tr {attribute}="{re.escape(name)}">(.*?)</tr>', page, re.DOTALL)
    assert found is not None, f"no row {attribute}={name}"
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))))


def _runs(project: ProjectKeys, task: str) -> list[Run]:
    with transaction() as session:
        return list(session.scalars(select(Run).where(
            Run.environment_id == project.environment_ids["dev"],
            Run.task_identifier == task).order_by(Run.created_at)))


def _set(run_id: str, **values: Any) -> None:
    with transaction() as session:
        session.execute(update(Run).where(Run.id == run_id).values(**values))


@pytest.fixture
def api_other() -> ProjectKeys:
    """A second project with a key per environment (nothing of it is shown to the first)."""
    from reprise_server.shared.projects import repository as projects_repo
    from reprise_server.shared.projects.service import create_key, ensure_project

    slug = f"p-{secrets.token_hex(4)}"
    with transaction() as session:
        proj = ensure_project(session, slug)
        keys = {env: create_key(session, env, slug) for env in ("dev", "staging", "prod")}
        ids = {env: projects_repo.get_environment(session, proj.id, env).id  # type: ignore[union-attr]
               for env in ("dev", "staging", "prod")}
    return ProjectKeys(proj.id, slug, keys, ids)


# Tasks


def test_tasks_page_lists_the_current_versions_tasks_with_runs_and_failure_rate(
    api: Any, project: ProjectKeys
) -> None:
    ok = triggers.in_db(project, "test-echo", publish=False, payload={"n": 1})
    bad = triggers.in_db(project, "test-echo", publish=False, payload={"n": 2})
    waiting = triggers.in_db(project, "test-echo", publish=False, payload={"n": 3})
    _set(ok, status="COMPLETED")
    _set(bad, status="FAILED")
    sign_in(api, project)
    page = api.get("/dashboard/tasks?env=dev")
    assert page.status_code == 200
    assert "20261122.1" in page.text  # the current worker version
    echo = _row(page.text, "data-task", "test-echo")
    assert "task/test-echo" in echo
    assert "50%" in echo
    assert "1 of 2" in echo
    for run_id in (ok, bad, waiting):
        assert f"/dashboard/runs/{run_id}?env=dev" in page.text
    assert "1h" in _row(page.text, "data-task", "test-ttl-default")
    limited = _row(page.text, "data-task", "dash-limited")
    assert "task/dash-limited · 3 / 2 per key" in limited
    assert "dash-shared · 1" in limited
    assert "no runs yet" in _row(page.text, "data-task", "test-fail-until")


def test_tasks_page_without_a_version_says_so(api: Any, project: ProjectKeys) -> None:
    with transaction() as session:
        session.execute(text("DELETE FROM worker_versions WHERE environment_id = :e"),
                        {"e": project.environment_ids["staging"]})
    sign_in(api, project)
    page = api.get("/dashboard/tasks?env=staging")
    assert "No worker version has registered in this environment yet" in page.text


def test_test_action_prefills_the_last_payload_and_triggers_a_run(
    api: Any, project: ProjectKeys
) -> None:
    triggers.in_db(project, "test-echo", publish=False, payload={"hello": "world"})
    token = sign_in(api, project)
    form = api.get("/dashboard/tasks/test-echo/test?env=dev")
    assert form.status_code == 200
    assert "&#34;hello&#34;: &#34;world&#34;" in form.text
    assert "{}" in api.get("/dashboard/tasks/test-sleep/test?env=dev").text

    sent = api.post("/dashboard/tasks/test-echo/test", data={
        "csrf_token": token, "env": "dev", "payload": '{"x": [1, 2]}'}, follow_redirects=False)
    assert sent.status_code == 303
    run = _runs(project, "test-echo")[-1]
    assert sent.headers["location"] == f"/dashboard/runs/{run.id}?env=dev"
    assert run.payload == {"x": [1, 2]}
    assert run.is_test


def test_test_action_refusals_write_nothing(api: Any, project: ProjectKeys) -> None:
    token = sign_in(api, project)
    bad = api.post("/dashboard/tasks/test-echo/test",
                   data={"csrf_token": token, "env": "dev", "payload": "{nope"})
    assert bad.status_code == 400
    assert "Payload is not valid JSON" in bad.text
    assert "{nope" in bad.text  # the editor keeps what was typed
    unknown = api.post("/dashboard/tasks/no-such-task/test",
                       data={"csrf_token": token, "env": "dev", "payload": "{}"})
    assert unknown.status_code == 404
    forged = api.post("/dashboard/tasks/test-echo/test",
                      data={"csrf_token": "wrong", "env": "dev", "payload": "{}"})
    assert forged.status_code == 403
    assert _runs(project, "test-echo") == []
    assert _runs(project, "no-such-task") == []


# Search


def test_search_by_run_id_key_tag_and_batch(api: Any, project: ProjectKeys) -> None:
    run = triggers.in_db(project, "test-echo", publish=False, idempotencyKey="order-77",
                         tags=["customer-9"])
    batched = triggers.in_db(project, "test-echo", publish=False)
    _set(batched, batch_id="batch_abc123")
    sign_in(api, project)

    def go(query: str) -> Any:
        return api.get("/dashboard/search", params={"env": "dev", "q": query},
                       follow_redirects=False)

    assert go(run).headers["location"] == f"/dashboard/runs/{run}?env=dev"
    assert go("order-77").headers["location"] == f"/dashboard/runs/{run}?env=dev"
    assert go("customer-9").headers["location"] == "/dashboard/runs?env=dev&tag=customer-9"
    batch = go("batch_abc123")
    assert batch.headers["location"] == "/dashboard/runs?env=dev&batch=batch_abc123"
    listed = api.get(batch.headers["location"])
    assert batched in listed.text
    assert run not in listed.text

    nothing = go("nobody-has-this")
    assert nothing.status_code == 404
    assert "Nothing found" in nothing.text
    # A run of another environment is not found from this one.
    other = triggers.in_db(project, "test-echo", env="staging", publish=False)
    assert go(other).status_code == 404


def test_search_that_names_several_things_answers_a_results_page(
    api: Any, project: ProjectKeys
) -> None:
    keyed = triggers.in_db(project, "test-echo", publish=False, idempotencyKey="dup")
    tagged = triggers.in_db(project, "test-sleep", publish=False, tags=["dup"])
    sign_in(api, project)
    page = api.get("/dashboard/search", params={"env": "dev", "q": "dup"})
    assert page.status_code == 200
    assert "1 run tagged" in html.unescape(page.text)
    assert keyed in page.text
    assert "Runs with the idempotency key" in page.text
    assert tagged not in page.text  # it is behind the tag's link


# API keys


def _key_count(project_id: str) -> int:
    with transaction() as session:
        return int(session.scalar(text(
            "SELECT count(*) FROM api_keys k JOIN environments e ON e.id = k.environment_id "
            "WHERE e.project_id = :p"), {"p": project_id}) or 0)


def test_api_keys_list_create_once_and_revoke(api: Any, project: ProjectKeys,
                                              api_other: ProjectKeys) -> None:
    token = sign_in(api, project)
    page = api.get("/dashboard/api-keys?env=dev")
    assert page.status_code == 200
    for secret in project.keys.values():
        assert secret[:13] in page.text  # each key's shown prefix
        assert secret not in page.text  # never the key
    assert api_other.keys["dev"][:13] not in page.text  # another project's keys

    created = api.post("/dashboard/api-keys",
                       data={"csrf_token": token, "env": "dev", "environment": "prod"})
    assert created.status_code == 200
    secret = re.search(r'id="new-secret"[^>]*value="([^"]+)"', created.text)
    assert secret is not None
    assert "shown this once" in created.text
    new_key = secret.group(1)
    assert new_key.startswith("tr_prod_")
    assert api.get("/api/v1/runs", headers={"Authorization": f"Bearer {new_key}"}
                   ).status_code == 200
    assert new_key not in api.get("/dashboard/api-keys?env=dev").text

    with transaction() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.display_prefix == new_key[:14]))
    assert key_id is not None
    asked = api.get(f"/dashboard/api-keys?env=dev&dialog=revoke&key={key_id}")
    assert "Revoke key" in asked.text
    forged = api.post("/dashboard/api-keys/revoke",
                      data={"csrf_token": "x", "env": "dev", "key": key_id})
    assert forged.status_code == 403
    revoked = api.post("/dashboard/api-keys/revoke",
                       data={"csrf_token": token, "env": "dev", "key": key_id},
                       follow_redirects=False)
    assert revoked.status_code == 303
    assert api.get("/api/v1/runs", headers={"Authorization": f"Bearer {new_key}"}
                   ).status_code == 401


def test_api_keys_refusals(api: Any, project: ProjectKeys, api_other: ProjectKeys) -> None:
    token = sign_in(api, project)
    before = _key_count(project.project_id)
    wrong = api.post("/dashboard/api-keys",
                     data={"csrf_token": token, "env": "dev", "environment": "qa"})
    assert wrong.status_code == 400
    assert "environment must be one of" in wrong.text
    forged = api.post("/dashboard/api-keys",
                      data={"csrf_token": "nope", "env": "dev", "environment": "dev"})
    assert forged.status_code == 403
    assert _key_count(project.project_id) == before
    with transaction() as session:
        other_id = session.scalar(select(ApiKey.id).where(
            ApiKey.display_prefix == api_other.keys["dev"][:13]))
    other = api.post("/dashboard/api-keys/revoke",
                     data={"csrf_token": token, "env": "dev", "key": other_id})
    assert other.status_code == 404
    assert api.get("/api/v1/runs", headers=api_other.headers()).status_code == 200
    api.cookies.clear()
    assert api.get("/dashboard/api-keys", follow_redirects=False).status_code == 303


# Schedules


def _schedules(project: ProjectKeys) -> list[Schedule]:
    with transaction() as session:
        return list(session.scalars(select(Schedule).where(
            Schedule.environment_id == project.environment_ids["dev"])))


def test_schedule_create_edit_toggle_delete(api: Any, project: ProjectKeys) -> None:
    token = sign_in(api, project)
    assert "New schedule" in api.get("/dashboard/schedules?env=dev").text
    base = {"csrf_token": token, "env": "dev"}
    made = api.post("/dashboard/schedules", data={
        **base, "task": "test-echo", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris",
        "externalId": "user_1", "deduplicationKey": "morning"}, follow_redirects=False)
    assert made.status_code == 303, made.text
    (schedule,) = _schedules(project)
    assert (schedule.cron, schedule.timezone, schedule.external_id, schedule.deduplication_key
            ) == ("0 9 * * 1-5", "Europe/Paris", "user_1", "morning")
    assert schedule.active

    edit = api.get(f"/dashboard/schedules/{schedule.id}/edit?env=dev")
    assert 'value="0 9 * * 1-5"' in edit.text
    assert "Europe/Paris" in edit.text
    saved = api.post(f"/dashboard/schedules/{schedule.id}", data={
        **base, "task": "test-echo", "cron": "30 18 * * *", "timezone": "",
        "externalId": ""}, follow_redirects=False)
    assert saved.status_code == 303
    (schedule,) = _schedules(project)
    assert (schedule.cron, schedule.timezone, schedule.external_id) == (
        "30 18 * * *", "UTC", None)

    assert api.post(f"/dashboard/schedules/{schedule.id}/deactivate", data=base,
                    follow_redirects=False).status_code == 303
    assert not _schedules(project)[0].active
    assert api.post(f"/dashboard/schedules/{schedule.id}/activate", data=base,
                    follow_redirects=False).status_code == 303
    assert _schedules(project)[0].active
    asked = api.get(f"/dashboard/schedules?env=dev&dialog=delete&schedule={schedule.id}")
    assert "Delete schedule" in asked.text
    assert api.post(f"/dashboard/schedules/{schedule.id}/delete", data=base,
                    follow_redirects=False).status_code == 303
    assert _schedules(project) == []


def test_schedule_refusals_write_nothing(api: Any, project: ProjectKeys) -> None:
    token = sign_in(api, project)
    base = {"csrf_token": token, "env": "dev"}
    bad_cron = api.post("/dashboard/schedules", data={**base, "task": "test-echo",
                                                      "cron": "61 * * * *"})
    assert bad_cron.status_code == 400
    assert "61 * * * *" in bad_cron.text
    assert 'value="61 * * * *"' in bad_cron.text  # the form keeps what was typed
    bad_zone = api.post("/dashboard/schedules", data={**base, "task": "test-echo",
                                                      "cron": "0 * * * *", "timezone": "Mars/Base"})
    assert bad_zone.status_code == 400
    unknown = api.post("/dashboard/schedules", data={**base, "task": "no-such-task",
                                                     "cron": "0 * * * *"})
    assert unknown.status_code == 404
    assert "Task not found" in unknown.text
    forged = api.post("/dashboard/schedules", data={**base, "csrf_token": "x",
                                                    "task": "test-echo", "cron": "0 * * * *"})
    assert forged.status_code == 403
    assert _schedules(project) == []


def test_declarative_schedules_stay_read_only(api: Any, project: ProjectKeys) -> None:
    from reprise_server.shared.schedules.service import sync_declarative

    with transaction() as session:
        sync_declarative(session, project.project_id, project.environment_ids["dev"], "dev",
                         {"test-echo": {"cron": "0 3 * * *"}})
    (schedule,) = _schedules(project)
    token = sign_in(api, project)
    listed = api.get("/dashboard/schedules?env=dev")
    assert "read-only: declared in code" in _row(listed.text, "data-schedule", schedule.id)
    assert f"/schedules/{schedule.id}/edit" not in listed.text
    edit = api.get(f"/dashboard/schedules/{schedule.id}/edit?env=dev")
    assert edit.status_code == 400
    assert "declared in code" in html.unescape(edit.text)
    base = {"csrf_token": token, "env": "dev"}
    for action in ("deactivate", "delete"):
        refused = api.post(f"/dashboard/schedules/{schedule.id}/{action}", data=base)
        assert refused.status_code == 400
        assert "declarative" in refused.text
    assert _schedules(project)[0].active


def test_describe_json_answers_as_the_save_would(api: Any, project: ProjectKeys) -> None:
    sign_in(api, project)
    fine = api.get("/dashboard/schedules/describe.json",
                   params={"env": "dev", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris"})
    assert fine.status_code == 200
    assert fine.json()["description"]
    assert len(fine.json()["next"]) == 3
    bad = api.get("/dashboard/schedules/describe.json", params={"env": "dev", "cron": "nope"})
    assert bad.status_code == 400
    assert "nope" in bad.json()["error"]
    api.cookies.clear()
    assert api.get("/dashboard/schedules/describe.json?cron=*").status_code == 401


def test_a_key_two_tasks_used_lists_both_runs(api: Any, project: ProjectKeys) -> None:
    first = triggers.in_db(project, "test-echo", publish=False, idempotencyKey="shared-key")
    second = triggers.in_db(project, "test-sleep", publish=False, idempotencyKey="shared-key")
    sign_in(api, project)
    page = api.get("/dashboard/search", params={"env": "dev", "q": " shared-key "})
    assert page.status_code == 200
    assert first in page.text
    assert second in page.text
    assert 'value="shared-key"' in page.text  # the header's box keeps the search
