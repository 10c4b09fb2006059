"""Realtime shapes: the runs a subscription follows, and what changed in them since the
client last looked.

A shape is one run, the runs carrying every one of some tags created after a cutoff, or a
batch's runs. Offsets are Postgres snapshots: "changed since offset S" is
``NOT pg_visible_in_snapshot(realtime_xid, S)``, which misses no write whatever the commit
order. Why: docs/architecture.md#realtime.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, text
from sqlalchemy.orm import Session

from reprise_server.shared.durations import format_duration, iso
from reprise_server.shared.errors import BadRequest
from reprise_server.shared.payloads import STORE
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus

# How many runs a shape sends at once (the initial rows of a tag shape, a burst of changes).
MAX_ROWS = 1000

_SNAPSHOT_OFFSET = re.compile(r"^(\d{1,20})_(\d{1,20})(?:_(\d{1,20}(?:\.\d{1,20})*))?$")


@dataclass(frozen=True)
class Shape:
    """Which runs of ``environment_id``; ``keys`` name the change notifications that may
    concern it (:mod:`api.realtime_hub`)."""

    environment_id: str
    run_id: str | None = None
    batch_id: str | None = None
    tags: tuple[str, ...] = ()
    created_after: datetime | None = None
    keys: tuple[str, ...] = field(default=())

    def where(self) -> list[ColumnElement[bool]]:
        conditions = [Run.environment_id == self.environment_id]
        if self.run_id is not None:
            conditions.append(Run.id == self.run_id)
        if self.batch_id is not None:
            conditions.append(Run.batch_id == self.batch_id)
        if self.tags:
            conditions.append(Run.tags.contains(list(self.tags)))
        if self.created_after is not None:
            conditions.append(Run.created_at > self.created_after)
        return conditions


def run_shape(environment_id: str, run_id: str) -> Shape:
    return Shape(environment_id, run_id=run_id, keys=(f"run:{run_id}",))


def batch_shape(environment_id: str, batch_id: str) -> Shape:
    return Shape(environment_id, batch_id=batch_id, keys=(f"batch:{batch_id}",))


def tags_shape(environment_id: str, tags: Iterable[str], created_after: datetime) -> Shape:
    """Runs carrying every one of ``tags`` (every run of the environment if none): a run
    of the shape carries the first tag, so only its changes need wake the shape."""
    wanted = tuple(tags)
    key = f"tag:{environment_id}:{wanted[0]}" if wanted else f"env:{environment_id}"
    return Shape(environment_id, tags=wanted, created_after=created_after, keys=(key,))


def offset_of(snapshot: str) -> str:
    """Electric's ``offset`` for a ``pg_snapshot`` (``xmin:xmax:xip,…``): url-safe."""
    xmin, xmax, xip = snapshot.split(":")
    return f"{xmin}_{xmax}" + (f"_{xip.replace(',', '.')}" if xip else "")


def snapshot_of(offset: str) -> str:
    """The snapshot an offset this server gave names; 400 for anything else."""
    found = _SNAPSHOT_OFFSET.match(offset)
    if found is None:
        raise BadRequest(f"offset {offset!r} is not an offset this server gave")
    xmin, xmax, xip = found.groups()
    if int(xmin) > int(xmax):
        raise BadRequest(f"offset {offset!r} is not an offset this server gave")
    return f"{xmin}:{xmax}:{(xip or '').replace('.', ',')}"


_CURRENT_SNAPSHOT = text("SELECT pg_current_snapshot()::text")
# A row stamped before realtime_xid existed (NULL) counts as unchanged.
_CHANGED_SINCE = text(
    "NOT pg_visible_in_snapshot(runs.realtime_xid::text::xid8, CAST(:since AS pg_snapshot))"
)


@dataclass(frozen=True)
class ShapeRead:
    runs: list[Run]
    offset: str


def read_shape(session: Session, shape: Shape, since: str | None) -> ShapeRead:
    """The shape's runs (oldest first) — all of them, or with ``since`` (an offset) only
    those changed after it — and the offset of this read. ``session`` must be a fresh
    transaction: it is made REPEATABLE READ so the snapshot and the rows agree."""
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    snapshot = session.execute(_CURRENT_SNAPSHOT).scalar_one()
    query = select(Run).where(*shape.where())
    if since is not None:
        query = query.where(_CHANGED_SINCE.bindparams(since=snapshot_of(since)))
    runs = list(session.scalars(query.order_by(Run.created_at, Run.id).limit(MAX_ROWS + 1)))
    if len(runs) > MAX_ROWS:
        # An offset is a snapshot: it cannot say "the first MAX_ROWS of what changed", so a
        # read that would be cut is refused rather than silently missing the rest.
        raise BadRequest(
            f"this subscription {'changed' if since else 'matches'} more than {MAX_ROWS} runs "
            "at once; subscribe to fewer (more tags, or a later createdAt)"
        )
    return ShapeRead(runs, offset_of(str(snapshot)))


# --- the run as Trigger.dev's realtime sends it (``SubscribeRunRawShape``) -----------------

# Trigger.dev's stored run statuses (the SDK maps them to the public ones). A run waiting
# to retry is QUEUED in the current vocabulary, as in every other Reprise read.
_STORED_STATUS = {
    RunStatus.PENDING_VERSION: "PENDING_VERSION",
    RunStatus.DELAYED: "DELAYED",
    RunStatus.QUEUED: "PENDING",
    RunStatus.RETRYING: "PENDING",
    RunStatus.DEQUEUED: "DEQUEUED",
    RunStatus.EXECUTING: "EXECUTING",
    RunStatus.WAITING: "WAITING_TO_RESUME",
    RunStatus.COMPLETED: "COMPLETED_SUCCESSFULLY",
    RunStatus.FAILED: "COMPLETED_WITH_ERRORS",
    RunStatus.CANCELED: "CANCELED",
    RunStatus.CRASHED: "CRASHED",
    RunStatus.SYSTEM_FAILURE: "SYSTEM_FAILURE",
    RunStatus.EXPIRED: "EXPIRED",
    RunStatus.TIMED_OUT: "TIMED_OUT",
}

# Columns a subscription may leave out with ``skipColumns``; the others are always sent.
RESERVED_COLUMNS = frozenset({"id", "friendlyId", "taskIdentifier", "status", "createdAt",
                              "updatedAt"})
COLUMNS = RESERVED_COLUMNS | {
    "startedAt", "delayUntil", "queuedAt", "expiredAt", "completedAt", "idempotencyKey",
    "number", "isTest", "usageDurationMs", "costInCents", "baseCostInCents", "ttl",
    "payload", "payloadType", "metadata", "metadataType", "output", "outputType", "runTags",
    "error", "realtimeStreams",
}


def skipped_columns(names: Iterable[str]) -> frozenset[str]:
    """The columns named by ``skipColumns``; 400 for one that is not a column or is one
    every row must carry."""
    skipped = frozenset(n.strip() for n in names if n.strip())
    unknown = sorted(skipped - COLUMNS)
    if unknown:
        raise BadRequest(f"skipColumns names unknown columns: {', '.join(unknown)}")
    reserved = sorted(skipped & RESERVED_COLUMNS)
    if reserved:
        raise BadRequest(f"skipColumns cannot skip {', '.join(reserved)}")
    return skipped


def _date(moment: datetime | None) -> str | None:
    # Electric sends `timestamp` columns without a zone; the SDK appends the `Z`.
    if moment is None:
        return None
    return (iso(moment) or "").removesuffix("Z")


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return {"type": "BUILT_IN_ERROR", "name": error.get("name") or "Error",
            "message": error.get("message", ""), "stackTrace": error.get("stackTrace") or ""}


def run_row(run: Run, *, public: bool, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The run as a row of Trigger.dev's realtime shape. A public token sees no payload
    or output, as in every other read."""
    row: dict[str, Any] = {
        "id": run.id,
        "friendlyId": run.id,
        "taskIdentifier": run.task_identifier,
        "status": _STORED_STATUS[run.status],
        "createdAt": _date(run.created_at),
        "updatedAt": _date(run.updated_at),
        "startedAt": _date(run.started_at),
        "delayUntil": _date(run.delayed_until),
        "queuedAt": _date(run.queued_at),
        "expiredAt": _date(run.expired_at),
        "completedAt": _date(run.finished_at),
        "idempotencyKey": run.idempotency_key,
        "number": run.attempt_count,
        "isTest": run.is_test,
        "usageDurationMs": run.duration_ms,
        "costInCents": run.cost_in_cents,
        "baseCostInCents": run.base_cost_in_cents,
        "ttl": format_duration(run.ttl_seconds) if run.ttl_seconds else None,
        **({"payload": None, "payloadType": None} if public else _payload_columns(run)),
        "metadata": _json_text(run.metadata_),
        "metadataType": "application/json" if run.metadata_ is not None else None,
        "output": None if public else _json_text(run.output),
        "outputType": None if public or run.output is None else "application/json",
        "runTags": sorted(run.tags or []),
        "error": _error(run.error),
        "realtimeStreams": [],
    }
    return {key: value for key, value in row.items() if key not in skip}


def _payload_columns(run: Run) -> dict[str, Any]:
    # An offloaded payload is its packet's path, typed application/store, as Trigger.dev's
    # row holds it: the SDK reads the packet through GET /api/v1/packets/{path}.
    if run.payload_type == STORE:
        return {"payload": run.payload, "payloadType": STORE}
    return {"payload": _json_text(run.payload),
            "payloadType": None if run.payload is None else "application/json"}


def shape_key(run: Run) -> str:
    return f'"public"."TaskRun"/"{run.id}"'
