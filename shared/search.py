"""The dashboard's search box: what one string names in an environment. A run id (that
run), an idempotency key (the runs triggered with it), a tag (how many runs carry it) or
a batch id (how many runs it holds). Each is an indexed lookup: the run's primary key,
``uq_runs_idempotency`` (by the key's hash, as a trigger stores it: a key already
released, by a failed run or an expired key, is no longer found), ``ix_runs_tags``
(GIN) and ``ix_runs_batch``."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from reprise_server.shared.idempotency import hash_key
from reprise_server.shared.ids import is_run_id
from reprise_server.shared.projects.service import AuthContext
from reprise_server.shared.runs.models import Run

MAX_QUERY = 2048
KEYED_RUNS_SHOWN = 20


@dataclass
class Found:
    query: str
    run: Run | None = None
    keyed: list[Run] = field(default_factory=list)  # runs with this idempotency key
    tagged: int = 0
    batched: int = 0

    @property
    def kinds(self) -> int:
        return sum(1 for hit in (self.run, self.keyed, self.tagged, self.batched) if hit)

    @property
    def nothing(self) -> bool:
        return self.kinds == 0


def search(session: Session, auth: AuthContext, raw: str) -> Found:
    """Everything ``raw`` (trimmed) names in the caller's environment."""
    query = raw.strip()[:MAX_QUERY]
    found = Found(query)
    if not query or "\x00" in query:
        return found
    env = auth.environment_id
    if is_run_id(query):
        found.run = session.scalar(
            select(Run).where(Run.environment_id == env, Run.id == query))
    found.keyed = list(session.scalars(
        select(Run)
        .where(Run.environment_id == env, Run.idempotency_key_hash == hash_key(query))
        .order_by(Run.created_at.desc())
        .limit(KEYED_RUNS_SHOWN)
    ))
    if len(query) <= 128:  # a tag is at most 128 characters
        found.tagged = int(session.scalar(
            select(func.count()).select_from(Run)
            .where(Run.environment_id == env, Run.tags.contains([query]))) or 0)
    if len(query) <= 64:
        found.batched = int(session.scalar(
            select(func.count()).select_from(Run)
            .where(Run.environment_id == env, Run.batch_id == query)) or 0)
    return found
