"""Public access tokens (JWT, HS256) scoped ``read:runs:<id>`` (§10), and signed packet URLs."""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt

from shared.errors import Unauthorized
from shared.projects.service import AuthContext
from shared.settings import get_settings


def create_public_token(auth: AuthContext, run_ids: list[str]) -> str:
    settings = get_settings()
    now = int(time.time())
    claims = {
        "sub": auth.environment_id,
        "pid": auth.project_id,
        "env": auth.environment_slug,
        "pub": True,
        "scopes": [f"read:runs:{run_id}" for run_id in run_ids],
        "iat": now,
        "exp": now + settings.jwt_ttl_seconds,
    }
    return jwt.encode(claims, settings.secret_key, algorithm="HS256")


def authenticate_public_token(token: str) -> AuthContext:
    try:
        claims = jwt.decode(token, get_settings().secret_key, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise Unauthorized() from None
    if not claims.get("pub") or not claims.get("sub"):
        raise Unauthorized()
    run_ids = frozenset(
        scope.removeprefix("read:runs:")
        for scope in claims.get("scopes", [])
        if isinstance(scope, str) and scope.startswith("read:runs:")
    )
    return AuthContext(
        project_id=str(claims.get("pid", "")),
        environment_id=str(claims["sub"]),
        environment_slug=str(claims.get("env", "")),
        public_run_ids=run_ids,
    )


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
