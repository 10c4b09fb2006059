"""Keys, public tokens and environment isolation, at the domain level (real Postgres)."""

from __future__ import annotations

import time

import jwt
import pytest
from sqlalchemy import select

from shared.db import transaction
from shared.errors import InvalidInput, RunNotFound, Unauthorized
from shared.projects import service
from shared.projects.models import ApiKey
from shared.projects.tokens import (
    authenticate_public_token,
    create_public_token,
    sign_packet,
    verify_packet,
)
from tests.support.fixtures import ProjectKeys
from tests.support.timers import trigger_in_db


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


def test_a_key_finds_runs_of_its_own_environment_only(project: ProjectKeys) -> None:
    run_id = trigger_in_db(project, env="dev", publish=False)
    with transaction() as session:
        auth, head = service.authenticate_for_run(session, project.keys["dev"], run_id)
        assert (auth.environment_id, head.run_id) == (project.environment_ids["dev"], run_id)
        with pytest.raises(RunNotFound):  # another environment's run is invisible: 404
            service.authenticate_for_run(session, project.keys["prod"], run_id)
        with pytest.raises(Unauthorized):  # a wrong key is a 401 before anything else
            service.authenticate_for_run(session, "tr_dev_wrong", run_id)


def test_a_public_token_reads_exactly_the_runs_it_names(project: ProjectKeys) -> None:
    with transaction() as session:
        auth = service.authenticate(session, project.keys["dev"])
    token = create_public_token(auth, ["run_a1b2c3d4e5"])
    public = authenticate_public_token(token)
    assert public.is_public
    assert public.public_run_ids == frozenset({"run_a1b2c3d4e5"})
    assert public.environment_id == auth.environment_id


def test_a_tampered_or_foreign_token_is_unauthorized(project: ProjectKeys) -> None:
    with transaction() as session:
        auth = service.authenticate(session, project.keys["dev"])
    token = create_public_token(auth, ["run_a1b2c3d4e5"])
    forged = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "scopes": ["read:runs:*"]},
        "not-the-secret-key-of-this-server-at-all", algorithm="HS256",
    )
    with pytest.raises(Unauthorized):
        authenticate_public_token(forged)
    with pytest.raises(Unauthorized):
        authenticate_public_token(token[:-2] + "xx")


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
