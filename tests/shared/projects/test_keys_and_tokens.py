"""Keys, public tokens and environment isolation, at the domain level (real Postgres)."""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import select, update

from reprise_server.shared.db import transaction
from reprise_server.shared.errors import InvalidInput, Unauthorized
from reprise_server.shared.projects import service
from reprise_server.shared.projects.models import ApiKey
from reprise_server.shared.projects.tokens import (
    JWT_AUDIENCE,
    JWT_ISSUER,
    authenticate_public_token,
    create_public_token,
    sign_packet,
    verify_packet,
)
from tests.support.fixtures import ProjectKeys


def test_a_key_is_stored_only_as_its_hash_and_authenticates_its_environment(
    project: ProjectKeys,
) -> None:
    secret = project.keys["staging"]
    assert secret.startswith("tr_stg_")
    with transaction() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
        auth = service.authenticate(session, secret)
    assert secret not in stored
    assert service.hash_key(secret) in stored
    assert auth.environment_id == project.environment_ids["staging"]
    assert auth.environment_slug == "staging"
    assert auth.project_id == project.project_id


@pytest.mark.parametrize("secret", [None, "", "Bearer x", "tr_dev_not-a-key", "sk_live_x"])
def test_a_missing_malformed_or_unknown_key_is_unauthorized(
    project: ProjectKeys, secret: str | None
) -> None:
    with transaction() as session, pytest.raises(Unauthorized):
        service.authenticate(session, secret)


def test_a_revoked_key_stops_authenticating(project: ProjectKeys) -> None:
    with transaction() as session:
        secret = service.create_key(session, "prod", project.slug)
        [listed] = [k for k in service.list_keys(session) if secret.startswith(k.display_prefix)]
        assert service.revoke_key(session, listed.id) == 1
    with transaction() as session, pytest.raises(Unauthorized):
        service.authenticate(session, secret)


def test_an_unknown_environment_is_refused(project: ProjectKeys) -> None:
    with transaction() as session, pytest.raises(InvalidInput):
        service.create_key(session, "qa", project.slug)


def _sdk_token(secret: str, claims: dict[str, object], expires_in: int = 3600) -> str:
    """A token as the official SDK's generateJWT signs it: HS256 with the secret key."""
    now = int(time.time())
    payload = {"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, "exp": now + expires_in,
               **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def test_a_server_token_reads_exactly_the_runs_it_names(project: ProjectKeys) -> None:
    with transaction() as session:
        auth = service.authenticate(session, project.keys["dev"])
    token = create_public_token(auth, ["read:runs:run_a1b2c3d4e5"])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["pub"]) == (JWT_ISSUER, JWT_AUDIENCE, True)
    with transaction() as session:
        public = authenticate_public_token(session, token)
    assert public.is_public
    assert public.environment_id == auth.environment_id
    assert public.may_read_run("run_a1b2c3d4e5", "hello", [], None)
    assert not public.may_read_run("run_other00000", "hello", [], None)


def test_a_token_the_sdk_signs_with_the_secret_key_verifies(project: ProjectKeys) -> None:
    secret = project.keys["dev"]
    token = _sdk_token(secret, {"sub": project.environment_ids["dev"], "pub": True,
                                "scopes": ["read:tags:user_1", "read:batch:batch_1"]})
    with transaction() as session:
        public = authenticate_public_token(session, token)
    assert public.environment_id == project.environment_ids["dev"]
    assert public.may_read_run("run_x0000000", "t", ["user_1"], None)
    assert public.may_read_run("run_x0000000", "t", [], "batch_1")
    assert not public.may_read_run("run_x0000000", "t", ["user_2"], "batch_2")


def test_a_key_created_before_it_was_kept_verifies_after_its_first_claims_call(
    project: ProjectKeys,
) -> None:
    secret = project.keys["dev"]
    token = _sdk_token(secret, {"sub": project.environment_ids["dev"], "pub": True})
    with transaction() as session:
        session.execute(update(ApiKey).values(secret_ciphertext=None))
    with transaction() as session, pytest.raises(Unauthorized):
        authenticate_public_token(session, token)
    with transaction() as session:
        service.remember_key_secret(session, secret)
    with transaction() as session:
        assert authenticate_public_token(session, token).is_public


def test_tokens_of_a_revoked_key_stop_verifying(project: ProjectKeys) -> None:
    with transaction() as session:
        secret = service.create_key(session, "prod", project.slug)
    token = _sdk_token(secret, {"sub": project.environment_ids["prod"], "pub": True})
    with transaction() as session:
        assert authenticate_public_token(session, token).is_public
        [listed] = [k for k in service.list_keys(session) if secret.startswith(k.display_prefix)]
        service.revoke_key(session, listed.id)
    with transaction() as session, pytest.raises(Unauthorized):
        authenticate_public_token(session, token)


@pytest.mark.parametrize(
    "case", ["expired", "foreign-secret", "tampered", "no-audience", "not-public", "other-env"]
)
def test_expired_forged_or_malformed_tokens_are_unauthorized(
    project: ProjectKeys, case: str
) -> None:
    env_id = project.environment_ids["dev"]
    claims: dict[str, object] = {"sub": env_id, "pub": True, "scopes": ["read:runs"]}
    secret = project.keys["dev"]
    token = {
        "expired": lambda: _sdk_token(secret, claims, expires_in=-10),
        "foreign-secret": lambda: _sdk_token("not-the-secret-key-of-this-server-at-all", claims),
        "tampered": lambda: _sdk_token(secret, claims)[:-2] + "xx",
        "no-audience": lambda: jwt.encode(
            {**claims, "exp": int(time.time()) + 60}, secret, algorithm="HS256"),
        "not-public": lambda: _sdk_token(secret, {**claims, "pub": False}),
        # signed with this environment's key, naming another environment
        "other-env": lambda: _sdk_token(secret, {**claims, "sub": project.environment_ids["prod"]}),
    }[case]()
    with transaction() as session, pytest.raises(Unauthorized):
        authenticate_public_token(session, token)


def test_a_one_time_use_token_triggers_once(project: ProjectKeys) -> None:
    token = _sdk_token(project.keys["dev"], {"sub": project.environment_ids["dev"], "pub": True,
                                              "otu": True, "scopes": ["trigger:tasks:hello"]})
    with transaction() as session:
        access = authenticate_public_token(session, token).access
        assert access is not None
        assert access.allows("trigger", "tasks", ["hello"])
        assert not access.allows("trigger", "tasks", ["other"])
        service.spend_public_token(session, access)
    with transaction() as session, pytest.raises(Unauthorized, match="already been used"):
        service.spend_public_token(session, access)


def test_packet_signatures_bind_run_kind_and_expiry() -> None:
    expires = int(time.time()) + 60
    signature = sign_packet("run_a1b2c3d4e5", "payload", expires)
    assert verify_packet("run_a1b2c3d4e5", "payload", expires, signature)
    assert not verify_packet("run_a1b2c3d4e5", "output", expires, signature)
    assert not verify_packet("run_other0000", "payload", expires, signature)
    assert not verify_packet("run_a1b2c3d4e5", "payload", expires + 1, signature)
    past = int(time.time()) - 1
    expired = sign_packet("run_a1b2c3d4e5", "payload", past)
    assert not verify_packet("run_a1b2c3d4e5", "payload", past, expired)
