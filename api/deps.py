"""Request plumbing shared by the routes: the caller, the body, the API version."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from shared.errors import BadRequest
from shared.projects.service import AuthContext, authenticate
from shared.projects.tokens import authenticate_public_token


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def caller(session: Session, request: Request, *, allow_public: bool = False) -> AuthContext:
    """The environment calling: a secret key, or (for reads) a public access token."""
    token = bearer(request)
    if allow_public and token and token.count(".") == 2 and not token.startswith("tr_"):
        return authenticate_public_token(token)
    # Anything that is not a secret key (a JWT on a write route included) is a 401 here.
    return authenticate(session, token)


def api_version(request: Request) -> str | None:
    return request.headers.get("x-trigger-api-version")


async def raw_body(request: Request) -> bytes:
    return await request.body()


def parse_json(body: bytes, *, required: bool, message: str = "Invalid request body") -> Any:
    """The JSON body, or None when empty and optional; malformed JSON is a 400."""
    if not body.strip():
        if required:
            raise BadRequest(message)
        return None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest(message) from None
