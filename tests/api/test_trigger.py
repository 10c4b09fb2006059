"""POST /api/v1/tasks/{taskId}/trigger: payloads, options, idempotency and every error row."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from reprise_server.shared.db import transaction
from reprise_server.shared.runs.models import Run
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row

SDK_HEADERS = {"x-trigger-api-version": "2025-07-16", "trigger-version": "4.8.3"}


def run_count() -> int:
    with transaction() as session:
        return int(session.execute(select(func.count()).select_from(Run)).scalar_one())


def test_sdk_superjson_trigger_stores_decoded_payload_and_options(
    api: Any, project: ProjectKeys
) -> None:
    body = {
        "payload": json.dumps(
            {"json": {"foo": "bar", "n": 1, "when": "2026-01-01T00:00:00.000Z"},
             "meta": {"values": {"when": ["Date"]}}}
        ),
        "options": {
            "payloadType": "application/super+json",
            "payloadSize": 98,
            "ttl": "10m",
            "tags": ["user_1", "org_2"],
            "maxAttempts": 3,
            "metadata": {"a": 1},
            "maxDuration": 60,
            "queue": {"name": "emails"},
            "concurrencyKey": "user_1",
            "priority": 10,
            "test": True,
        },
    }
    response = triggers.post(api, project, "test-echo", body)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"id"}
    run = run_row(response.json()["id"])
    assert run.payload == {"foo": "bar", "n": 1, "when": "2026-01-01T00:00:00.000Z"}
    assert run.payload_type == "application/super+json"
    assert run.tags == ["org_2", "user_1"]
    assert (run.ttl_seconds, run.max_attempts, run.max_duration_seconds) == (600, 3, 60)
    assert (run.queue, run.concurrency_key, run.priority, run.is_test) == ("emails", "user_1", 10, True)
    assert run.metadata_ == {"a": 1}
    # Queued at once (a worker started by another test may already be executing it).
    assert run.queued_at is not None
    assert run.ttl_expires_at is not None


@pytest.mark.parametrize(
    ("payload", "kind", "stored"),
    [
        ('{"a": 1}', "application/json", {"a": 1}),
        ("just text", "text/plain", "just text"),
        ({"plain": True}, None, {"plain": True}),
    ],
)
def test_payload_types(
    api: Any, project: ProjectKeys, payload: Any, kind: str | None, stored: Any
) -> None:
    options = {"payloadType": kind} if kind else {}
    response = triggers.post(api, project, "test-echo", {"payload": payload, "options": options})
    assert response.status_code == 200, response.text
    assert run_row(response.json()["id"]).payload == stored


def test_idempotency_key_returns_the_existing_run_and_shows_the_users_key(
    api: Any, project: ProjectKeys
) -> None:
    options = {
        "idempotencyKey": "be29" + "0" * 56 + "9d44",
        "idempotencyKeyOptions": {"key": "key-1", "scope": "run"},
    }
    first = triggers.post(api, project, "test-echo", {"payload": {}, "options": options})
    second = triggers.post(api, project, "test-echo", {"payload": {}, "options": options})
    assert first.status_code == second.status_code == 200
    assert second.json() == {"id": first.json()["id"], "isCached": True}
    body = api.get(f"/api/v3/runs/{first.json()['id']}", headers=project.headers()).json()
    assert body["idempotencyKey"] == "key-1"
    assert run_count() == 1


def test_failed_run_releases_its_idempotency_key(api: Any, project: ProjectKeys) -> None:
    options = {"idempotencyKey": "my-key"}
    first = triggers.post(api, project, "test-echo", {"options": options}).json()["id"]
    with transaction() as session:
        session.execute(Run.__table__.update().where(Run.id == first).values(status="FAILED"))
    second = triggers.post(api, project, "test-echo", {"options": options}).json()
    assert second["id"] != first
    assert "isCached" not in second


def test_request_idempotency_header_deduplicates_sdk_retries(api: Any, project: ProjectKeys) -> None:
    header = {"x-trigger-request-idempotency-key": "6f1c2f8e-0000-4000-8000-000000000001"}
    first = triggers.post(api, project, "test-echo", {"payload": 1}, **header)
    second = triggers.post(api, project, "test-echo", {"payload": 1}, **header)
    assert first.json()["id"] == second.json()["id"]
    assert run_count() == 1


def test_jwt_header_is_a_public_token_scoped_to_the_run(api: Any, project: ProjectKeys) -> None:
    response = triggers.post(api, project, "test-echo", {"payload": {"secret": 1}})
    token = response.headers["x-trigger-jwt"]
    run_id = response.json()["id"]
    public = api.get(f"/api/v3/runs/{run_id}", headers={"Authorization": f"Bearer {token}"})
    assert public.status_code == 200
    assert "payload" not in public.json()
    other = triggers.post(api, project, "test-echo", {"payload": 2}).json()["id"]
    denied = api.get(f"/api/v3/runs/{other}", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "Invalid request body"),
        (b"[1, 2]", 400, "the request body must be a JSON object"),
        ({"options": {"tags": [f"t{i}" for i in range(11)]}}, 400, "at most 10 tags"),
        ({"options": {"tags": ["x" * 129]}}, 400, "at most 128 characters"),
        ({"options": {"maxAttempts": 0}}, 400, "maxAttempts"),
        ({"options": {"ttl": "soon"}}, 400, "options.ttl"),
        ({"options": {"delay": "whenever"}}, 400, "options.delay"),
        ({"payload": "{bad", "options": {"payloadType": "application/json"}}, 400, "payload"),
        ({"options": {"payloadType": "application/xml"}}, 400, "payloadType"),
    ],
)
def test_bad_input_gets_a_clear_error_and_writes_nothing(
    api: Any, project: ProjectKeys, body: Any, status: int, message: str
) -> None:
    response = triggers.post(api, project, "test-echo", body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert message in response.json()["error"]
    assert run_count() == 0


def test_unknown_task_is_404(api: Any, project: ProjectKeys) -> None:
    response = triggers.post(api, project, "no-such-task", {"payload": {}})
    assert response.status_code == 404
    assert "no-such-task" in response.json()["error"]
    assert run_count() == 0


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer ", "Bearer tr_dev_wrong", "Basic abc", "Bearer a.b.c"]
)
def test_missing_or_wrong_key_is_401(api: Any, project: ProjectKeys, authorization: str | None) -> None:
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = api.post("/api/v1/tasks/test-echo/trigger", json={"payload": 1}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or Missing API key"}
    assert run_count() == 0


def test_revoked_key_is_401(api: Any, project: ProjectKeys) -> None:
    from reprise_server.shared.projects.repository import revoke_key

    prefix = project.keys["dev"][: len("tr_dev_") + 6]
    with transaction() as session:
        assert revoke_key(session, prefix) == 1
    assert triggers.post(api, project, "test-echo", {}).status_code == 401


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_bound(
    api: Any, project: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process revoking the key (here: the repository, behind this api's back)
    is seen within REPRISE_AUTH_CACHE_SECONDS; the revoking process sees it at once."""
    from reprise_server.shared.projects.repository import revoke_key
    from reprise_server.shared.projects.service import revoke_key as revoke_key_here
    from reprise_server.shared.settings import get_settings
    from tests.support.fixtures import wait_for

    monkeypatch.setattr(get_settings(), "auth_cache_seconds", 1.0)
    assert triggers.post(api, project, "test-echo", {}).status_code == 200  # verified: cached
    with transaction() as session:
        assert revoke_key(session, project.keys["dev"][: len("tr_dev_") + 6]) == 1
    assert triggers.post(api, project, "test-echo", {}).status_code == 200  # still in the window
    wait_for(lambda: triggers.post(api, project, "test-echo", {}).status_code == 401, timeout=3,
             interval=0.1, what="the revoked key to be refused")

    def staging() -> int:
        return int(api.post("/api/v1/tasks/test-echo/trigger", json={"payload": 1},
                            headers=project.headers("staging")).status_code)

    assert staging() == 200
    with transaction() as session:
        assert revoke_key_here(session, project.keys["staging"][: len("tr_stg_") + 6]) == 1
    assert staging() == 401


def test_body_over_the_limit_is_413(api: Any, project: ProjectKeys) -> None:
    huge = b'{"payload": "' + b"x" * (10 * 1024 * 1024 + 1) + b'"}'
    response = triggers.post(api, project, "test-echo", huge)
    assert response.status_code == 413
    assert response.json() == {"error": "Request body too large"}
    assert run_count() == 0


def test_task_missing_from_current_version_waits_for_a_version(
    api: Any, project: ProjectKeys
) -> None:
    from reprise.registry import Registry, TaskDefinition
    from reprise_server.workers.runtime import register_version

    # A newer version without test-echo becomes current in every environment.
    newer = Registry({"hello-world": TaskDefinition(id="hello-world", fn=lambda p, c: p)})
    register_version(newer, "20261122.2", ["dev", "staging", "prod"], project.project_id)
    run_id = triggers.post(api, project, "test-echo", {"payload": 1}).json()["id"]
    assert run_row(run_id).status == "PENDING_VERSION"
    legacy = api.get(f"/api/v3/runs/{run_id}", headers=project.headers()).json()
    assert legacy["status"] == "WAITING_FOR_DEPLOY"
    current = api.get(f"/api/v3/runs/{run_id}", headers=project.headers(**SDK_HEADERS)).json()
    assert current["status"] == "PENDING_VERSION"

    from reprise.registry import REGISTRY

    assert register_version(REGISTRY, "20261122.3", ["dev", "staging", "prod"], project.project_id) >= 1
    assert run_row(run_id).status != "PENDING_VERSION"
    assert run_row(run_id).queued_at is not None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"payload": {"a": 1}, "delay": "1h"},
         "unknown top-level field 'delay': options go under 'options'"),
        ({"name": "Ada"}, "unknown top-level field 'name': the task's input goes under 'payload'"),
    ],
)
def test_a_stray_top_level_field_is_refused_not_dropped(
    api: Any, project: ProjectKeys, body: dict[str, Any], message: str
) -> None:
    response = triggers.post(api, project, "test-echo", body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert run_count() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dealy": "1h"}, "unknown option 'dealy'"),
        ({"resumeParentOnCompletion": True},
         "options.resumeParentOnCompletion is not supported: waiting for a child run"),
        ({"parentAttempt": "attempt_1"}, "options.parentAttempt is not supported"),
        ({"bulkActionId": "bulk_1"}, "options.bulkActionId is not supported"),
        ({"concurrency": ["no_such_limit"]}, "no worker version declares"),
        ({"metadata": {"a": 1}, "metadataType": "application/super+json"},
         "options.metadataType 'application/super+json' is not supported"),
    ],
)
def test_an_option_reprise_does_not_know_or_honour_is_refused_not_dropped(
    api: Any, project: ProjectKeys, options: dict[str, Any], message: str
) -> None:
    response = triggers.post(api, project, "test-echo", {"payload": 1, "options": options})
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert run_count() == 0


def test_options_the_sdk_sends_with_their_default_values_are_accepted(
    api: Any, project: ProjectKeys
) -> None:
    options = {"metadata": {"a": 1}, "metadataType": "application/json",
               "resumeParentOnCompletion": False}
    response = triggers.post(api, project, "test-echo", {"payload": 1, "options": options})
    assert response.status_code == 200, response.text
    assert run_row(response.json()["id"]).metadata_ == {"a": 1}


def test_a_delay_in_the_past_queues_at_once_and_says_so(api: Any, project: ProjectKeys) -> None:
    """Trigger.dev accepts it (the SDK's own retries may land late), so it is not refused;
    the response says what happened."""
    response = triggers.post(api, project, "test-echo",
                       {"payload": 1, "options": {"delay": "2020-01-01T00:00:00Z"}})
    assert response.status_code == 200
    assert response.headers["x-reprise-warning"] == (
        "options.delay '2020-01-01T00:00:00Z' is not in the future: the run was queued at once"
    )
    assert run_row(response.json()["id"]).status in ("QUEUED", "DEQUEUED", "EXECUTING", "COMPLETED")
    ok = triggers.post(api, project, "test-echo", {"payload": 1, "options": {"delay": "1h"}})
    assert "x-reprise-warning" not in ok.headers


@pytest.mark.parametrize("delay", [1.5, 90, 3600.25])
def test_a_numeric_delay_is_seconds_to_the_fraction_as_a_replays_is(
    api: Any, project: ProjectKeys, delay: float
) -> None:
    response = triggers.post(api, project, "test-echo", {"payload": 1, "options": {"delay": delay}})
    assert response.status_code == 200, response.text
    run = run_row(response.json()["id"])
    assert run.status == "DELAYED"
    assert run.delayed_until - run.created_at == timedelta(seconds=delay)


def test_a_negative_numeric_delay_is_refused(api: Any, project: ProjectKeys) -> None:
    response = triggers.post(api, project, "test-echo", {"payload": 1, "options": {"delay": -5}})
    assert response.status_code == 400
    assert "options.delay" in response.json()["error"]


def test_a_numeric_concurrency_key_is_stored_and_shown_as_its_string(
    api: Any, project: ProjectKeys
) -> None:
    """``concurrencyKey: 7`` and ``"7"`` name one pool: stored as "7", the Strait run shows
    it, and the limit's per-key bound (1) admits one of the two while the other waits."""
    from tests.support.tasks import gate

    hold = {"hold": f"numeric-key-{project.slug}"}
    try:
        numeric = triggers.via_api(api, project, "test-limited", payload=hold, concurrencyKey=7)
        text = triggers.via_api(api, project, "test-limited", payload=hold, concurrencyKey="7")
        assert (run_row(numeric).concurrency_key, run_row(text).concurrency_key) == ("7", "7")
        shown = api.get(f"/v1/runs/{numeric}", headers=project.headers()).json()
        assert shown["concurrency_key"] == "7"
        limit = api.get("/api/v1/concurrency-limits/task/test-limited",
                        params={"concurrencyKey": 7}, headers=project.headers()).json()
        assert (limit["concurrencyKey"], limit["running"]) == ("7", 1)
        item = api.get("/api/v1/concurrency-limits/task/test-limited",
                       headers=project.headers()).json()
        assert (item["running"], item["queued"]) == (1, 1)
        assert run_row(text).admission == "waiting"
    finally:
        gate(f"{hold['hold']}:release").set()
