"""The run lifecycle: one table of allowed transitions, used by every status change.

Internal states are stored in ``runs.status``. The public vocabularies are mappings
of these states: the current one (``x-trigger-api-version: 2025-07-16``) and the older one
of the v3 API.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING_VERSION = "PENDING_VERSION"
    DELAYED = "DELAYED"
    QUEUED = "QUEUED"
    DEQUEUED = "DEQUEUED"
    EXECUTING = "EXECUTING"
    RETRYING = "RETRYING"
    # A durable wait ended its execution (``ctx.wait_for`` and friends): it holds no worker
    # slot and no concurrency slot until the wait is satisfied and it is queued again.
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    SYSTEM_FAILURE = "SYSTEM_FAILURE"
    EXPIRED = "EXPIRED"
    TIMED_OUT = "TIMED_OUT"


class AttemptStatus(StrEnum):
    """An attempt's status (``attempts[].status`` on the wire)."""

    PENDING = "PENDING"
    EXECUTING = "EXECUTING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


S = RunStatus

FINAL_STATES = frozenset(
    {S.COMPLETED, S.CANCELED, S.FAILED, S.CRASHED, S.SYSTEM_FAILURE, S.EXPIRED, S.TIMED_OUT}
)

# from-state -> states it may move to. A self-transition (DELAYED -> DELAYED) is a
# reschedule; EXECUTING -> DEQUEUED and DEQUEUED -> DEQUEUED reclaim a run whose worker
# died (stale heartbeat); DEQUEUED -> QUEUED / PENDING_VERSION hand a run back when the
# worker that took it lacks its task. QUEUED -> EXECUTING is a first attempt claimed and
# started in one move by a worker that has the task (DEQUEUED was only ever seen inside
# that transaction). The moves themselves: ``shared.runs.lifecycle``.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    S.PENDING_VERSION: frozenset({S.QUEUED, S.DELAYED, S.CANCELED, S.EXPIRED}),
    S.DELAYED: frozenset({S.DELAYED, S.QUEUED, S.PENDING_VERSION, S.CANCELED, S.EXPIRED}),
    S.QUEUED: frozenset({S.DEQUEUED, S.EXECUTING, S.PENDING_VERSION, S.CANCELED, S.EXPIRED}),
    S.DEQUEUED: frozenset(
        {
            S.EXECUTING,
            S.DEQUEUED,
            S.QUEUED,
            S.PENDING_VERSION,
            S.CANCELED,
            S.EXPIRED,
            S.CRASHED,
            S.SYSTEM_FAILURE,
        }
    ),
    S.EXECUTING: frozenset(
        {
            S.COMPLETED,
            S.FAILED,
            S.RETRYING,
            S.CANCELED,
            S.TIMED_OUT,
            S.CRASHED,
            S.SYSTEM_FAILURE,
            S.DEQUEUED,
            S.WAITING,
        }
    ),
    S.RETRYING: frozenset({S.DEQUEUED, S.CANCELED, S.CRASHED}),
    S.WAITING: frozenset({S.QUEUED, S.CANCELED}),
}
for _final in FINAL_STATES:
    TRANSITIONS[_final] = frozenset()


def sources_of(target: RunStatus) -> frozenset[RunStatus]:
    """Every state from which ``target`` may be entered (the CAS's ``WHERE status = ANY``)."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


def can_transition(source: RunStatus, target: RunStatus) -> bool:
    return target in TRANSITIONS[source]


# Public vocabularies (docs/api.md#statuses).
CURRENT_API_VERSION = "2025-07-16"

_CURRENT: dict[RunStatus, str] = {
    S.PENDING_VERSION: "PENDING_VERSION",
    S.DELAYED: "DELAYED",
    S.QUEUED: "QUEUED",
    S.DEQUEUED: "DEQUEUED",
    S.EXECUTING: "EXECUTING",
    # A run waiting to retry is back in its queue from the SDK's point of view.
    S.RETRYING: "QUEUED",
    S.WAITING: "WAITING",
    S.COMPLETED: "COMPLETED",
    S.CANCELED: "CANCELED",
    S.FAILED: "FAILED",
    S.CRASHED: "CRASHED",
    S.SYSTEM_FAILURE: "SYSTEM_FAILURE",
    S.EXPIRED: "EXPIRED",
    S.TIMED_OUT: "TIMED_OUT",
}

_LEGACY: dict[RunStatus, str] = {
    **_CURRENT,
    S.PENDING_VERSION: "WAITING_FOR_DEPLOY",
    S.DEQUEUED: "EXECUTING",
    S.RETRYING: "REATTEMPTING",
    S.WAITING: "FROZEN",
}


def public_status(status: RunStatus, api_version: str | None) -> str:
    table = _CURRENT if api_version and api_version >= CURRENT_API_VERSION else _LEGACY
    return table[status]


_FILTER_ALIASES: dict[str, frozenset[RunStatus]] = {
    "WAITING_FOR_DEPLOY": frozenset({S.PENDING_VERSION}),
    "REATTEMPTING": frozenset({S.RETRYING}),
    "FROZEN": frozenset({S.WAITING}),
    "INTERRUPTED": frozenset(),
    "QUEUED": frozenset({S.QUEUED, S.RETRYING}),
    "EXECUTING": frozenset({S.EXECUTING, S.DEQUEUED}),
}


def statuses_for_filter(name: str, api_version: str | None) -> frozenset[RunStatus]:
    """Internal states matching a public status name of either vocabulary."""
    key = name.strip().upper()
    if key == "EXECUTING" and api_version and api_version >= CURRENT_API_VERSION:
        return frozenset({S.EXECUTING})
    if key in _FILTER_ALIASES:
        return _FILTER_ALIASES[key]
    try:
        return frozenset({RunStatus(key)})
    except ValueError:
        raise ValueError(f"unknown status {name!r}") from None


QUEUED_LIKE = frozenset({S.QUEUED, S.DELAYED, S.PENDING_VERSION, S.RETRYING})
EXECUTING_LIKE = frozenset({S.EXECUTING, S.DEQUEUED})
# A run holding concurrency limits keeps its slots in these states (QUEUED once admitted:
# published, on its way to a worker); leaving them gives the slots back.
HOLDS_SLOT = frozenset({S.QUEUED, S.DEQUEUED, S.EXECUTING})
FAILED_LIKE = frozenset({S.FAILED, S.CRASHED, S.SYSTEM_FAILURE, S.EXPIRED, S.TIMED_OUT})
# Runs that failed or expired release their idempotency key for a new trigger.
RELEASES_IDEMPOTENCY_KEY = FAILED_LIKE
