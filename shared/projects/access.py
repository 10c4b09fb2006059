"""What a public access token may do: its scopes, in Trigger.dev's grammar.

A scope is ``<action>:<kind>`` (every resource of the kind) or ``<action>:<kind>:<id>``
(one): ``read:runs:<run id>``, ``read:tags:<tag>``, ``read:batch:<batch id>``,
``read:tasks:<task id>``, ``trigger:tasks:<task id>``, ``batchTrigger:tasks:<task id>``;
``read:all`` reads everything and ``admin`` does everything, as in Trigger.dev. A secret
key is not limited by scopes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class PublicAccess:
    scopes: frozenset[str]
    one_time_use: bool = False
    token_hash: str | None = None
    expires_at: datetime | None = None
    # The token's ``realtime`` claim (``{skipColumns: [...]}``), applied to realtime reads.
    realtime: dict[str, Any] | None = None

    def allows(self, action: str, kind: str, ids: Iterable[str | None] = ()) -> bool:
        """Whether the token may do ``action`` on a resource of ``kind`` that any of ``ids``
        names (a run is named by its id, task, tags and batch: any one granted is enough)."""
        if "admin" in self.scopes or f"{action}:{kind}" in self.scopes:
            return True
        if action == "read" and "read:all" in self.scopes:
            return True
        return any(f"{action}:{kind}:{i}" in self.scopes for i in ids if i)

    def may_read_run(
        self, run_id: str, task_identifier: str, tags: Iterable[str], batch_id: str | None
    ) -> bool:
        return (
            self.allows("read", "runs", [run_id])
            or self.allows("read", "tasks", [task_identifier])
            or self.allows("read", "tags", tags)
            or self.allows("read", "batch", [batch_id])
        )
