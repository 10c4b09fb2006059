"""Rules for projects, environments and keys. Services take a session first and never commit."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from reprise_server.shared.errors import InvalidInput, NotFound, Unauthorized
from reprise_server.shared.projects import repository as repo
from reprise_server.shared.projects.access import PublicAccess
from reprise_server.shared.projects.models import (
    ENVIRONMENT_SLUGS,
    KEY_PREFIXES,
    Environment,
    Project,
)
from reprise_server.shared.projects.sealing import open_secret, seal_secret
from reprise_server.shared.settings import get_settings
from reprise_server.shared.ttl.policy import environment_default_ttls

DEFAULT_PROJECT_SLUG = "default"


@dataclass(frozen=True)
class AuthContext:
    """Who is calling: one environment of one project, with a secret key (everything in
    it) or a public access token (what its scopes allow)."""

    project_id: str
    environment_id: str
    environment_slug: str
    access: PublicAccess | None = None  # set for public access tokens (JWT)

    @property
    def is_public(self) -> bool:
        return self.access is not None

    def may_read_run(
        self, run_id: str, task_identifier: str, tags: list[str], batch_id: str | None
    ) -> bool:
        return self.access is None or self.access.may_read_run(
            run_id, task_identifier, tags, batch_id
        )

    def may(self, action: str, kind: str, resource_id: str | None = None) -> bool:
        return self.access is None or self.access.allows(action, kind, [resource_id])


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ensure_project(session: Session, slug: str = DEFAULT_PROJECT_SLUG) -> Project:
    """The project (and its three environments), created if missing."""
    project = repo.get_project_by_slug(session, slug)
    if project is None:
        project = repo.insert_project(session, slug, slug.replace("-", " ").title())
    repo.ensure_environments(session, project.id, environment_default_ttls())
    return project


def environment_of(session: Session, project_id: str, slug: str) -> Environment:
    if slug not in ENVIRONMENT_SLUGS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENT_SLUGS)}")
    env = repo.get_environment(session, project_id, slug)
    if env is None:
        raise InvalidInput(f"environment {slug!r} does not exist in this project")
    return env


def create_key(session: Session, env_slug: str, project_slug: str | None = None) -> str:
    """Create a secret key for an environment; returns the key, which is never stored."""
    project = ensure_project(session, project_slug or DEFAULT_PROJECT_SLUG)
    env = environment_of(session, project.id, env_slug)
    secret = KEY_PREFIXES[env_slug] + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")
    repo.insert_key(
        session, env.id, hash_key(secret), secret[: len(KEY_PREFIXES[env_slug]) + 6],
        seal_secret(secret),
    )
    return secret


class _KeyCache:
    """Recently verified secret keys (by hash) and their callers, for
    ``REPRISE_AUTH_CACHE_SECONDS``: a revoked key stops working in every api process
    within that bound (at once in the process that revoked it). Only keys that verified
    are kept; an unknown key is looked up every time."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, AuthContext]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> AuthContext | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._entries.pop(key_hash, None)
            return None
        return entry[1]

    def put(self, key_hash: str, auth: AuthContext) -> None:
        seconds = get_settings().auth_cache_seconds
        if seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + seconds, auth)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


KEY_CACHE = _KeyCache()


def cached_caller(secret: str | None) -> AuthContext | None:
    """The caller of a secret key verified within the cache window, without a query."""
    if not secret or not secret.startswith(tuple(KEY_PREFIXES.values())):
        return None
    return KEY_CACHE.get(hash_key(secret))


def authenticate(session: Session, secret: str | None) -> AuthContext:
    if not secret or not secret.startswith(tuple(KEY_PREFIXES.values())):
        raise Unauthorized()
    key_hash = hash_key(secret)
    cached = KEY_CACHE.get(key_hash)
    if cached is not None:
        return cached
    found = repo.find_active_key(session, key_hash)
    if found is None:
        raise Unauthorized()
    _, env = found
    auth = AuthContext(project_id=env.project_id, environment_id=env.id, environment_slug=env.slug)
    KEY_CACHE.put(key_hash, auth)
    return auth


def remember_key_secret(session: Session, secret: str) -> None:
    """Keep the (verified) secret key encrypted if it is not already, so public tokens the
    SDK signs with it verify (keys created before they were kept, or sealed under another
    ``REPRISE_SECRET_KEY``)."""
    key_hash = hash_key(secret)
    stored = repo.key_ciphertext(session, key_hash)
    if stored is None or open_secret(stored) != secret:
        repo.store_key_ciphertext(session, key_hash, seal_secret(secret))


def spend_public_token(session: Session, access: PublicAccess) -> None:
    """Record the use of a one-time-use token; 401 if it was used before."""
    if not access.one_time_use:
        return
    if access.token_hash is None or access.expires_at is None:
        raise Unauthorized()
    if not repo.spend_token(session, access.token_hash, access.expires_at):
        raise Unauthorized("This one-time use token has already been used")


@dataclass(frozen=True)
class KeyListing:
    """A secret key as ``reprise keys list`` shows it (the key itself is never stored)."""

    id: str
    project_slug: str
    environment_slug: str
    display_prefix: str
    revoked: bool
    # The project's ref (``proj_…``), as ``runs.list(projectRef)`` takes it.
    project_ref: str = ""
    project_id: str = ""
    created_at: datetime | None = None


def list_keys(session: Session, project_id: str | None = None) -> list[KeyListing]:
    """Every key of every project (or of one), oldest first, revoked ones included."""
    return [
        KeyListing(key.id, project.slug, env.slug, key.display_prefix, key.revoked_at is not None,
                   project.ref, project.id, key.created_at)
        for key, env, project in repo.list_keys(session, project_id)
    ]


def list_project_keys(session: Session, project_id: str) -> list[KeyListing]:
    """The keys of one project's environments (the dashboard's API keys page)."""
    return list_keys(session, project_id)


def create_project_key(session: Session, project_id: str, env_slug: str) -> str:
    """:func:`create_key` for an environment of the project with this id."""
    project = session.get(Project, project_id)
    if project is None:
        raise InvalidInput("This project does not exist")
    return create_key(session, env_slug, project.slug)


def revoke_project_key(session: Session, project_id: str, key_id: str) -> KeyListing:
    """Revoke the project's active key with this id (404 for a key of another project or
    none, 400 for one already revoked)."""
    found = next((k for k in list_project_keys(session, project_id) if k.id == key_id), None)
    if found is None:
        raise NotFound("API key not found")
    if found.revoked:
        raise InvalidInput(f"The key {found.display_prefix}… is already revoked")
    revoke_key(session, found.id)
    return found


def revoke_key(session: Session, key_id_or_prefix: str) -> int:
    """Revoke the active key with this id or shown prefix; returns how many were revoked.
    Other processes stop accepting it within ``REPRISE_AUTH_CACHE_SECONDS``."""
    KEY_CACHE.clear()
    return repo.revoke_key(session, key_id_or_prefix)
