"""Public access tokens (JWT), and signed packet URLs.

A public token is an HS256 JWT in the official SDK's format, signed either by the server
(with ``REPRISE_SECRET_KEY``) or by the SDK itself with the environment's secret key, which
is kept encrypted (AES-GCM) for that purpose. Expired, wrongly signed or malformed tokens
are 401. Format, signers and scopes: docs/api.md#authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy.orm import Session

from reprise_server.shared.errors import Unauthorized
from reprise_server.shared.projects import repository as repo
from reprise_server.shared.projects.access import PublicAccess
from reprise_server.shared.projects.sealing import open_secret
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.settings import get_settings

JWT_ISSUER = "https://id.trigger.dev"
JWT_AUDIENCE = "https://api.trigger.dev"
JWT_ALGORITHM = "HS256"


def create_public_token(auth: AuthContext, scopes: list[str]) -> str:
    """A token of the caller's environment with these scopes (``read:runs:<id>`` …),
    valid for ``REPRISE_JWT_TTL_SECONDS``."""
    settings = get_settings()
    now = int(time.time())
    claims = {
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "sub": auth.environment_id,
        "pub": True,
        "scopes": scopes,
        "iat": now,
        "exp": now + settings.jwt_ttl_seconds,
    }
    return jwt.encode(claims, settings.secret_key, algorithm=JWT_ALGORITHM)


def token_claims(auth: AuthContext) -> dict[str, Any]:
    """What ``POST /api/v1/auth/jwt/claims`` answers: the claims the SDK signs with."""
    return {"sub": auth.environment_id, "pub": True}


def _candidate_secrets(session: Session, environment_id: str) -> Iterator[str]:
    yield get_settings().secret_key
    for ciphertext in repo.active_key_ciphertexts(session, environment_id):
        secret = open_secret(ciphertext)
        if secret is not None:
            yield secret


def _verified_claims(session: Session, token: str) -> dict[str, Any]:
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Unauthorized() from None
    environment_id = unverified.get("sub")
    if not isinstance(environment_id, str) or not environment_id:
        raise Unauthorized()
    for secret in _candidate_secrets(session, environment_id):
        try:
            return dict(
                jwt.decode(
                    token, secret, algorithms=[JWT_ALGORITHM], audience=JWT_AUDIENCE,
                    issuer=JWT_ISSUER, options={"require": ["exp", "sub"]},
                )
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise Unauthorized() from None
    raise Unauthorized()


def authenticate_public_token(session: Session, token: str) -> AuthContext:
    """The environment and the access of a public token; 401 unless it verifies."""
    claims = _verified_claims(session, token)
    if claims.get("pub") is not True:
        raise Unauthorized()
    env = repo.get_environment_by_id(session, str(claims["sub"]))
    if env is None:
        raise Unauthorized()
    scopes = claims.get("scopes") or []
    if not isinstance(scopes, list):
        raise Unauthorized()
    access = PublicAccess(
        scopes=frozenset(s for s in scopes if isinstance(s, str)),
        one_time_use=claims.get("otu") is True,
        token_hash=hashlib.sha256(token.encode()).hexdigest(),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
        realtime=claims.get("realtime") if isinstance(claims.get("realtime"), dict) else None,
    )
    return AuthContext(env.project_id, env.id, env.slug, access=access)


# --- packet links -----------------------------------------------------------------------------


def sign_packet(run_id: str, kind: str, expires: int) -> str:
    message = f"{run_id}:{kind}:{expires}".encode()
    return hmac.new(get_settings().secret_key.encode(), message, hashlib.sha256).hexdigest()


def verify_packet(run_id: str, kind: str, expires: int, signature: str) -> bool:
    if expires < time.time():
        return False
    return hmac.compare_digest(sign_packet(run_id, kind, expires), signature)


def _object_message(method: str, environment_id: str, path: str, expires: int) -> bytes:
    return f"object:{method}:{environment_id}:{path}:{expires}".encode()


def sign_object(method: str, environment_id: str, path: str, expires: int) -> str:
    """The signature of a packet object URL: one method, one environment's path, until
    ``expires`` (a Unix time)."""
    message = _object_message(method, environment_id, path, expires)
    return hmac.new(get_settings().secret_key.encode(), message, hashlib.sha256).hexdigest()


def verify_object(method: str, environment_id: str, path: str, expires: int,
                  signature: str) -> bool:
    if expires < time.time():
        return False
    return hmac.compare_digest(sign_object(method, environment_id, path, expires), signature)
