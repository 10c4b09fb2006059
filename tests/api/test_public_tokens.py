"""Public access tokens at the API: which routes they may call and what their scopes let
them see (the SDK-level tests are in tests/e2e/test_sdk_tokens.py)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from reprise_server.shared.projects.tokens import JWT_AUDIENCE, JWT_ISSUER
from tests.support import triggers
from tests.support.fixtures import ProjectKeys


def sdk_token(project: ProjectKeys, scopes: list[str], *, env: str = "dev",
              expires_in: int = 3600, **claims: Any) -> str:
    """Signed as the official SDK's auth.createPublicToken signs: with the secret key."""
    now = int(time.time())
    payload = {"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, "exp": now + expires_in,
               "sub": project.environment_ids[env], "pub": True, "scopes": scopes, **claims}
    return jwt.encode(payload, project.keys[env], algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_claims_name_the_environment_for_the_sdk_to_sign(api: Any, project: ProjectKeys) -> None:
    response = api.post("/api/v1/auth/jwt/claims", headers=project.headers())
    assert response.status_code == 200
    assert response.json() == {"sub": project.environment_ids["dev"], "pub": True}
    token = sdk_token(project, ["read:runs"])
    assert api.post("/api/v1/auth/jwt/claims", headers=bearer(token)).status_code == 401


def test_a_token_for_one_run_reads_no_other(api: Any, project: ProjectKeys) -> None:
    mine = triggers.via_api(api, project, delay="1h")
    other = triggers.via_api(api, project, delay="1h")
    token = sdk_token(project, [f"read:runs:{mine}"])
    read = api.get(f"/api/v3/runs/{mine}", headers=bearer(token))
    assert read.status_code == 200
    assert "payload" not in read.json()
    for url in (f"/api/v3/runs/{other}", f"/realtime/v1/runs/{other}?offset=-1"):
        refused = api.get(url, headers=bearer(token))
        assert (refused.status_code, refused.json()) == (404, {"error": "Run not found"}), url
    assert api.get(f"/realtime/v1/runs/{mine}?offset=-1", headers=bearer(token)).status_code == 200
    # The secret key still reads every run of its environment.
    assert api.get(f"/api/v3/runs/{other}", headers=project.headers()).status_code == 200


def test_the_trigger_jwt_of_a_trigger_reads_its_run(api: Any, project: ProjectKeys) -> None:
    response = api.post("/api/v1/tasks/test-echo/trigger", json={"options": {"delay": "1h"}},
                        headers=project.headers())
    token = response.headers["x-trigger-jwt"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scopes"] == [f"read:runs:{response.json()['id']}"]
    assert (claims["iss"], claims["aud"], claims["sub"]) == (
        JWT_ISSUER, JWT_AUDIENCE, project.environment_ids["dev"]
    )
    assert api.get(f"/api/v3/runs/{response.json()['id']}", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("route", ["list", "cancel", "replay", "claims"])
def test_a_public_token_cannot_call_secret_key_routes(
    api: Any, project: ProjectKeys, route: str
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    token = bearer(sdk_token(project, ["admin"]))
    response = {
        "list": lambda: api.get("/api/v1/runs", headers=token),
        "cancel": lambda: api.post(f"/api/v2/runs/{run_id}/cancel", headers=token),
        "replay": lambda: api.post(f"/api/v1/runs/{run_id}/replay", headers=token),
        "claims": lambda: api.post("/api/v1/auth/jwt/claims", headers=token),
    }[route]()
    assert response.status_code == 401


def test_trigger_scopes_name_the_tasks_a_token_may_trigger(
    api: Any, project: ProjectKeys
) -> None:
    token = bearer(sdk_token(project, ["trigger:tasks:test-echo"]))
    ok = api.post("/api/v1/tasks/test-echo/trigger", json={"options": {"delay": "1h"}},
                  headers=token)
    assert ok.status_code == 200
    refused = api.post("/api/v1/tasks/hello-world/trigger", json={}, headers=token)
    assert refused.status_code == 403
    assert "hello-world" in refused.json()["error"]
    read_only = bearer(sdk_token(project, [f"read:runs:{ok.json()['id']}"]))
    assert api.post("/api/v1/tasks/test-echo/trigger", json={}, headers=read_only).status_code == 403


def test_a_one_time_trigger_token_retried_by_the_sdk_gets_the_run_it_created(
    api: Any, project: ProjectKeys
) -> None:
    """The SDK retries a trigger whose response it lost with the same per-request key:
    the retry answers the run the spent token created, and nothing else reuses the token."""
    token = bearer(sdk_token(project, ["trigger:tasks:test-echo"], otu=True))
    body = {"options": {"delay": "1h"}}
    retried = {**token, "x-trigger-request-idempotency-key": "req-1"}
    first = api.post("/api/v1/tasks/test-echo/trigger", json=body, headers=retried)
    assert first.status_code == 200, first.text
    again = api.post("/api/v1/tasks/test-echo/trigger", json=body, headers=retried)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    other = {**token, "x-trigger-request-idempotency-key": "req-2"}
    spent = api.post("/api/v1/tasks/test-echo/trigger", json=body, headers=other)
    assert spent.status_code == 401
    assert "already been used" in spent.json()["error"]
    assert api.post("/api/v1/tasks/test-echo/trigger", json=body, headers=token).status_code == 401


@pytest.mark.parametrize("case", ["expired", "wrong-secret", "other-environment-key"])
def test_expired_or_wrongly_signed_tokens_are_401(
    api: Any, project: ProjectKeys, case: str
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    token = {
        "expired": lambda: sdk_token(project, ["read:runs"], expires_in=-5),
        "wrong-secret": lambda: jwt.encode(
            jwt.decode(sdk_token(project, ["read:runs"]), options={"verify_signature": False}),
            "a-secret-that-is-not-this-environments-key", algorithm="HS256"),
        "other-environment-key": lambda: sdk_token(project, ["read:runs"], env="prod",
                                                   sub=project.environment_ids["dev"]),
    }[case]()
    for url in (f"/api/v3/runs/{run_id}", f"/realtime/v1/runs/{run_id}?offset=-1"):
        response = api.get(url, headers=bearer(token))
        assert (response.status_code, response.json()) == (
            401, {"error": "Invalid or Missing API key"}
        ), url


def test_tag_and_batch_scopes_open_their_realtime_shapes_only(
    api: Any, project: ProjectKeys
) -> None:
    triggers.via_api(api, project, delay="1h", tags=["mine"])
    tags = bearer(sdk_token(project, ["read:tags:mine"]))
    allowed = api.get("/realtime/v1/runs?tags=mine&offset=-1", headers=tags)
    assert allowed.status_code == 200
    assert len(allowed.json()) == 2  # the run, then up-to-date
    assert api.get("/realtime/v1/runs?tags=theirs&offset=-1", headers=tags).status_code == 403
    batch = api.post("/api/v3/batches", json={"runCount": 1}, headers=project.headers())
    batch_id = batch.json()["id"]
    reader = bearer(batch.headers["x-trigger-jwt"])
    assert api.get(f"/realtime/v1/batches/{batch_id}?offset=-1", headers=reader).status_code == 200
    other = api.post("/api/v3/batches", json={"runCount": 1}, headers=project.headers())
    refused = api.get(f"/realtime/v1/batches/{other.json()['id']}?offset=-1", headers=reader)
    assert refused.status_code == 404
