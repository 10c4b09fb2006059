"""Dashboard sign-in (docs/dashboard.md): a secret key, once, becomes a session.

* The cookie carries a random token; only its SHA-256 is stored. A session lasts
  ``REPRISE_DASHBOARD_SESSION_HOURS`` and ends at once when the key it was opened with is
  revoked (every request checks the key).
* A session shows one environment at a time: the key's at first, then any environment of
  the key's project (the switcher). The key's project is the boundary, as for a replay
  into another environment (a decision: docs/architecture.md#decisions).
* Every form carries the session's CSRF token (compared in constant time).
* ``reprise dev`` prints a one-time sign-in link: it works once, within 15 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from reprise_server.shared.db import db_now
from reprise_server.shared.errors import NotFound, Unauthorized
from reprise_server.shared.projects import repository as projects_repo
from reprise_server.shared.projects.models import Environment
from reprise_server.shared.projects.service import AuthContext, hash_key
from reprise_server.shared.sessions import repository as repo
from reprise_server.shared.sessions.models import DashboardSession, SignInLink
from reprise_server.shared.settings import get_settings

LINK_LIFETIME = timedelta(minutes=15)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """A resolved session: who it acts as (the shown environment), its CSRF token and the
    project's environments (for the switcher)."""

    session_id: str
    auth: AuthContext
    csrf_token: str
    environments: list[Environment]
    now: datetime
    # The project's ref (``proj_…``), shown in the header: what ``runs.list(ref)`` takes.
    project_ref: str = ""

    def check_csrf(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token, str(token))

    def environment(self, slug: str) -> Environment | None:
        return next((env for env in self.environments if env.slug == slug), None)


def _open(session: Session, key_id: str, environment_id: str) -> str:
    token = secrets.token_urlsafe(32)
    hours = get_settings().dashboard_session_hours
    repo.insert_session(session, DashboardSession(
        id=_hash(token), api_key_id=key_id, environment_id=environment_id,
        csrf_token=secrets.token_urlsafe(24),
        expires_at=db_now(session) + timedelta(hours=hours),
    ))
    return token


def sign_in(session: Session, secret: str) -> str:
    """A new session for the holder of ``secret``; returns the cookie's token (401 for a
    wrong or revoked key)."""
    found = projects_repo.find_active_key(session, hash_key(secret.strip())) if secret else None
    if found is None:
        raise Unauthorized()
    key, env = found
    return _open(session, key.id, env.id)


def create_sign_in_link(session: Session, secret: str) -> str:
    """A one-time sign-in link's token for the holder of ``secret``."""
    found = projects_repo.find_active_key(session, hash_key(secret))
    if found is None:
        raise Unauthorized()
    token = secrets.token_urlsafe(32)
    repo.insert_link(session, SignInLink(
        id=_hash(token), api_key_id=found[0].id, expires_at=db_now(session) + LINK_LIFETIME,
    ))
    return token


def redeem_sign_in_link(session: Session, token: str) -> str:
    """Use a link (once); returns a new session's token."""
    key_id = repo.redeem_link(session, _hash(token))
    found = repo.active_key(session, key_id) if key_id else None
    if found is None:
        raise NotFound("This sign-in link was already used, has expired or does not exist")
    return _open(session, found[0].id, found[1].id)


def resolve(session: Session, token: str | None, env_slug: str | None = None) -> SignedIn | None:
    """The signed-in session of a cookie's token, showing ``env_slug`` (an environment of
    the project) if given; None if there is none, it expired or its key was revoked."""
    if not token:
        return None
    found = repo.active_session(session, _hash(token))
    if found is None:
        return None
    row, env, now = found
    environments = [e for e in projects_repo.list_environments(session, env.project_id)]
    if env_slug and env_slug != env.slug:
        shown = next((e for e in environments if e.slug == env_slug), None)
        if shown is None:
            raise NotFound(f"Environment not found: {env_slug}")
        env = shown
    auth = AuthContext(project_id=env.project_id, environment_id=env.id,
                       environment_slug=env.slug)
    order = {"dev": 0, "staging": 1, "prod": 2}
    environments.sort(key=lambda e: order.get(e.slug, 9))
    ref = projects_repo.project_ref(session, env.project_id) or ""
    return SignedIn(row.id, auth, row.csrf_token, environments, now, ref)


def switch_environment(session: Session, signed_in: SignedIn, slug: str) -> Environment:
    env = signed_in.environment(slug)
    if env is None:
        raise NotFound(f"Environment not found: {slug}")
    repo.set_environment(session, signed_in.session_id, env.id)
    return env


def sign_out(session: Session, signed_in: SignedIn) -> None:
    repo.delete_session(session, signed_in.session_id)
