"""The caller and the run it names, for accepting a command on that run (a replay, a
reschedule)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from reprise_server.shared.access.repository import RunHead, find_key_and_run
from reprise_server.shared.errors import RunNotFound
from reprise_server.shared.projects.service import AuthContext, authenticate, hash_key


def authenticate_for_run(
    session: Session, secret: str | None, run_id: str, *, lock: bool = False
) -> tuple[AuthContext, RunHead]:
    """The caller holding ``secret`` and a run of its environment, in one round trip on the
    happy path (the accept of a replay or reschedule); ``lock`` locks the run's row.

    401 for a wrong key before 404 for a run it cannot see: the key is looked up on its
    own only when the joined lookup misses.
    """
    found = find_key_and_run(session, hash_key(secret), run_id, lock=lock) if secret else None
    if found is None:
        authenticate(session, secret)
        raise RunNotFound()
    auth = AuthContext(found.project_id, found.environment_id, found.environment_slug)
    return auth, found.run
