"""Public access tokens: the claims the official SDK signs its own tokens with."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from reprise_server.api.deps import BearerCredential, Caller, DbSession, EdgeRoute
from reprise_server.shared.projects.service import remember_key_secret
from reprise_server.shared.projects.tokens import token_claims

router = APIRouter(tags=["auth"], route_class=EdgeRoute)


@router.post("/api/v1/auth/jwt/claims",
             summary="The claims of a public access token of the caller's environment",
             response_description="{sub, pub}: auth.createPublicToken signs them with the key")
def jwt_claims(auth: Caller, credential: BearerCredential, session: DbSession) -> JSONResponse:
    # The SDK signs the token with this very key next: keep it, encrypted, to verify it.
    if credential.secret_key is not None:
        remember_key_secret(session, credential.secret_key)
    return JSONResponse(token_claims(auth))
