"""Beat sweeps that can be trusted: :func:`claim_sweep` takes a sweep's advisory lock, so a
duplicate arriving while the same sweep runs (two beats, a backlog) steps aside.

The work itself is claimed with ``FOR UPDATE SKIP LOCKED`` and changed by compare-and-set,
and beat entries expire. See docs/architecture.md#sweeps.
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
