"""Beat sweeps that can be trusted.

Exactly one beat runs in production (compose: one ``beat`` service; Kubernetes: a
single-replica Deployment with the ``Recreate`` strategy, so a rollout stops the old pod
before starting the new one). Nothing breaks if two run anyway, or if sweep messages
pile up while workers were down:

* every sweep is idempotent: rows are claimed with ``FOR UPDATE SKIP LOCKED`` and changed
  by compare-and-set, so two sweeps at once split the work and never apply it twice;
* each sweep first takes a Postgres advisory lock for its transaction
  (:func:`claim_sweep`, ``pg_try_advisory_xact_lock``): a duplicate that arrives while the
  same sweep runs returns at once instead of competing for the same rows;
* beat entries carry ``expires``: a sweep message still queued a few intervals after beat
  sent it (workers were down) is discarded by the worker, so a backlog does not run N
  times — one sweep does all outstanding work anyway. Beat itself does not catch up
  missed intervals after a restart: an overdue entry runs once.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from reprise_server.shared.sweeps import repository as repo


def sweep_lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a sweep name."""
    digest = hashlib.blake2b(f"reprise.sweep:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def claim_sweep(session: Session, name: str) -> bool:
    """True if this transaction may run sweep ``name``; False if another one is running it."""
    return repo.try_transaction_lock(session, sweep_lock_key(name))
