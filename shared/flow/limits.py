"""Concurrency limits: declared by worker versions, read and changed at runtime.

A declaration (``@task(concurrency=...)``) sets a limit's *base* bounds when a version
registers; ``override`` sets bounds on top (kept until ``reset``), or a temporary per-key
cap for one ``concurrencyKey`` (with a ``ttl``); ``pause`` stops admissions. Every change
that may give room fills the limit before its transaction commits
(:func:`shared.flow.admission.refill`), settled before the change answers: its answer
shows the runs it admitted. Wire shapes: ``ConcurrencyLimitItem`` and
``ConcurrencyLimitKeyItem`` of ``@trigger.dev/core``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from reprise_server.shared.durations import DurationError, iso, parse_duration
from reprise_server.shared.errors import InvalidInput, NotFound
from reprise_server.shared.flow import admission
from reprise_server.shared.flow.admission import limit_id
from reprise_server.shared.flow.models import ConcurrencyKey, ConcurrencyLimit
from reprise_server.shared.runs.schemas import valid_limit_name

MAX_BOUND = 100_000
DEFAULT_KEY_OVERRIDE_TTL = timedelta(days=7)
MAX_KEY_OVERRIDE_TTL = timedelta(days=30)
MAX_NAMED_LIMITS = 2


# --- declarations (worker versions) -------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    name: str
    total: int | None
    per_key: int | None


def _bound(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_BOUND:
        raise InvalidInput(f"{what} must be an integer from 0 to {MAX_BOUND} (got {value!r})")
    return value


def read_declarations(catalogue: Mapping[str, dict[str, Any]]) -> dict[str, Declaration]:
    """The limits a catalogue declares, checked (400 naming the task at fault), and each
    task's entry given ``concurrency_limits``: the names of the limits its runs hold."""
    declared: dict[str, tuple[Declaration, str]] = {}
    for task_id, options in catalogue.items():
        names: list[str] = []
        for item in options.get("concurrency") or ():
            where = f"task {task_id!r}: concurrency"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidInput(f"{where} must be limits with a name (got {item!r})")
            name = item["name"]
            if name.startswith("task/"):
                if name != f"task/{task_id}":
                    raise InvalidInput(f"{where}: a task's own limit is named 'task/{task_id}'")
            else:
                try:
                    valid_limit_name(name)
                except ValueError as exc:
                    raise InvalidInput(f"{where}: {exc}") from None
            found = Declaration(
                name,
                _bound(item.get("total"), f"{where} {name!r} total"),
                _bound(item.get("per_key"), f"{where} {name!r} per_key"),
            )
            earlier = declared.get(name)
            if earlier is not None and earlier[0] != found:
                raise InvalidInput(
                    f"concurrency limit {name!r} is declared differently by tasks "
                    f"{earlier[1]!r} and {task_id!r}"
                )
            declared[name] = (found, task_id)
            names.append(name)
        if sum(1 for n in names if not n.startswith("task/")) > MAX_NAMED_LIMITS:
            raise InvalidInput(
                f"task {task_id!r}: at most {MAX_NAMED_LIMITS} named concurrency limits"
            )
        if names:
            options["concurrency_limits"] = list(dict.fromkeys(names))
        else:
            options.pop("concurrency_limits", None)
    return {name: declaration for name, (declaration, _) in declared.items()}


def register_declarations(
    session: Session, environment_id: str, declarations: Mapping[str, Declaration],
    catalogue: Mapping[str, dict[str, Any]],
) -> None:
    """The environment's limits take the bounds this version declares (overrides kept),
    and its queues are known: each task's own and every named one."""
    register_declarations_in(session, [environment_id], declarations, catalogue)


def register_declarations_in(
    session: Session, environment_ids: Collection[str],
    declarations: Mapping[str, Declaration], catalogue: Mapping[str, dict[str, Any]],
) -> None:
    """:func:`register_declarations` in each of these environments, a few statements for
    them all (a worker process registers in every environment it serves when it boots)."""
    envs = sorted(set(environment_ids))
    if declarations and envs:
        rows = [
            {"id": limit_id(env, d.name), "environment_id": env, "name": d.name,
             "total_base": d.total, "per_key_base": d.per_key}
            for env in envs for d in declarations.values()
        ]
        # Only limits new or declared differently are written, and only those are refilled:
        # every worker process registers when it boots, in every environment it serves, and
        # must not lock (nor fill) every limit each time.
        known = {
            lid: (total, per_key)
            for lid, total, per_key in session.execute(
                _DECLARED_BOUNDS, {"ids": [r["id"] for r in rows]}
            )
        }
        changed = [r for r in rows
                   if known.get(r["id"]) != (r["total_base"], r["per_key_base"])]
        if changed:
            # Upserted (so locked) in id order, the order every settlement locks limits in:
            # a registration and a settlement of the same limits never wait for each other.
            changed.sort(key=lambda row: str(row["id"]))
            session.execute(_UPSERT_DECLARED, {
                column: [r[column] for r in changed]
                for column in ("id", "environment_id", "name", "total_base", "per_key_base")
            })
            ids = [str(r["id"]) for r in changed]
            _recap_keys(session, ids)
            # Filling a limit nobody waits for admits nothing: only those with a line are
            # filled (the upsert holds them locked, so no run enters a line meanwhile).
            admission.refill(session, session.scalars(_WITH_A_LINE, {"ids": ids}).all())
    queues = {f"task/{task_id}": "task" for task_id in catalogue}
    queues.update({o["queue"]: "custom" for o in catalogue.values() if o.get("queue")})
    if queues and envs:
        new = sorted(
            (queue_id(env, name), env, name, kind)
            for env in envs for name, kind in queues.items()
        )
        session.execute(_INSERT_QUEUES, {
            "ids": [q[0] for q in new], "envs": [q[1] for q in new],
            "names": [q[2] for q in new], "types": [q[3] for q in new],
        })


_DECLARED_BOUNDS = text(
    "SELECT id, total_base, per_key_base FROM concurrency_limits "
    "WHERE id = ANY(CAST(:ids AS varchar[]))"
)
_UPSERT_DECLARED = text(
    """
    INSERT INTO concurrency_limits
        (id, environment_id, name, total_base, per_key_base, paused, running)
    SELECT id, environment_id, name, total_base, per_key_base, false, 0
    FROM unnest(CAST(:id AS varchar[]), CAST(:environment_id AS varchar[]),
                CAST(:name AS varchar[]), CAST(:total_base AS integer[]),
                CAST(:per_key_base AS integer[]))
        AS d(id, environment_id, name, total_base, per_key_base)
    ORDER BY id
    ON CONFLICT (environment_id, name) DO UPDATE SET
        total_base = excluded.total_base, per_key_base = excluded.per_key_base,
        updated_at = now()
    """
)
_WITH_A_LINE = text(
    "SELECT DISTINCT limit_id FROM admission_line WHERE limit_id = ANY(CAST(:ids AS varchar[]))"
)
_INSERT_QUEUES = text(
    """
    INSERT INTO queues (id, environment_id, name, type, paused)
    SELECT id, environment_id, name, type, false
    FROM unnest(CAST(:ids AS varchar[]), CAST(:envs AS varchar[]), CAST(:names AS varchar[]),
                CAST(:types AS varchar[])) AS q(id, environment_id, name, type)
    ORDER BY id
    ON CONFLICT DO NOTHING
    """
)


def queue_id(environment_id: str, name: str) -> str:
    return "queue_" + hashlib.md5(f"{environment_id}/{name}".encode()).hexdigest()


def _recap_keys(session: Session, ids: Collection[str]) -> None:
    """Keys without an override of their own take their limit's per-key bound."""
    session.execute(text(
        """
        UPDATE concurrency_keys k SET cap = coalesce(l.per_key_override, l.per_key_base)
        FROM concurrency_limits l
        WHERE l.id = k.limit_id AND k.limit_id = ANY(:ids) AND k.override IS NULL
          AND k.cap IS DISTINCT FROM coalesce(l.per_key_override, l.per_key_base)
        """
    ), {"ids": list(ids)})


def existing_limit_names(
    session: Session, environment_id: str, names: Collection[str]
) -> set[str]:
    return set(session.scalars(select(ConcurrencyLimit.name).where(
        ConcurrencyLimit.environment_id == environment_id,
        ConcurrencyLimit.name.in_(list(names)),
    )))


def current_totals(
    session: Session, environment_id: str, names: Collection[str]
) -> dict[str, int | None]:
    """The ``total`` in force of these limits (a task queue's bound is its task's own
    limit's, ``task/<id>``: the dashboard and the gauges show it beside the queue)."""
    rows = session.execute(select(
        ConcurrencyLimit.name,
        func.coalesce(ConcurrencyLimit.total_override, ConcurrencyLimit.total_base),
    ).where(ConcurrencyLimit.environment_id == environment_id,
            ConcurrencyLimit.name.in_(list(names))))
    return {name: total for name, total in rows}


# --- runtime control ----------------------------------------------------------------------


def _bound_view(base: int | None, override: int | None, at: datetime | None) -> dict[str, Any]:
    return {
        "current": override if override is not None else base,
        "base": base,
        "override": override,
        "overriddenAt": iso(at) if override is not None else None,
    }


def limit_item(limit: ConcurrencyLimit, queued: int) -> dict[str, Any]:
    """``ConcurrencyLimitItem``: ``running`` counts the slots held (runs admitted, on
    their way to a worker or executing), ``queued`` the runs waiting in its line."""
    return {
        "id": limit.id,
        "name": limit.name,
        "perKey": _bound_view(limit.per_key_base, limit.per_key_override, limit.overridden_at),
        "total": _bound_view(limit.total_base, limit.total_override, limit.overridden_at),
        "running": limit.running,
        "queued": queued,
        "paused": limit.paused,
    }


def key_item(limit: ConcurrencyLimit, key: str, row: ConcurrencyKey | None) -> dict[str, Any]:
    base = limit.per_key_override if limit.per_key_override is not None else limit.per_key_base
    override = row.override if row is not None else None
    return {
        "name": limit.name,
        "concurrencyKey": key,
        "perKey": {
            "current": override if override is not None else base,
            "base": base,
            "override": override,
            "expiresAt": iso(row.override_expires_at) if row is not None else None,
        },
        "running": row.running if row is not None else 0,
        "paused": limit.paused,
    }


def _queued_counts(session: Session, ids: Collection[str]) -> dict[str, int]:
    rows = session.execute(text(
        "SELECT limit_id, sum(waiting) FROM concurrency_keys WHERE limit_id = ANY(:ids) "
        "GROUP BY limit_id"
    ), {"ids": list(ids)})
    return {lid: int(n or 0) for lid, n in rows}


def list_limits(
    session: Session, environment_id: str, page: int, per_page: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of the environment's limits (by name) and how many there are."""
    where = ConcurrencyLimit.environment_id == environment_id
    count = session.scalar(select(func.count()).select_from(ConcurrencyLimit).where(where)) or 0
    limits = session.scalars(
        select(ConcurrencyLimit).where(where).order_by(ConcurrencyLimit.name)
        .offset((page - 1) * per_page).limit(per_page)
    ).all()
    queued = _queued_counts(session, [lim.id for lim in limits])
    return [limit_item(lim, queued.get(lim.id, 0)) for lim in limits], count


def get_limit(session: Session, environment_id: str, name: str, *, lock: bool = False
              ) -> ConcurrencyLimit:
    query = select(ConcurrencyLimit).where(
        ConcurrencyLimit.environment_id == environment_id, ConcurrencyLimit.name == name
    )
    limit = session.scalars(query.with_for_update() if lock else query).first()
    if limit is None:
        raise NotFound(f"Concurrency limit not found: {name!r}")
    return limit


def retrieve(session: Session, environment_id: str, name: str) -> dict[str, Any]:
    limit = get_limit(session, environment_id, name)
    return limit_item(limit, _queued_counts(session, [limit.id]).get(limit.id, 0))


def retrieve_key(session: Session, environment_id: str, name: str, key: str) -> dict[str, Any]:
    """A limit as one ``concurrencyKey`` sees it (a key no run used yet: nothing running,
    the limit's per-key bound)."""
    limit = get_limit(session, environment_id, name)
    return key_item(limit, key, session.get(ConcurrencyKey, (limit.id, key)))


def _key_ttl(value: str | int | None) -> timedelta:
    if value is None:
        return DEFAULT_KEY_OVERRIDE_TTL
    try:
        ttl = timedelta(seconds=value if isinstance(value, int) else parse_duration(value))
    except (DurationError, ValueError):
        raise InvalidInput(f"ttl must be a duration such as '7d' or seconds (got {value!r})") from None
    if ttl <= timedelta(0) or ttl > MAX_KEY_OVERRIDE_TTL:
        raise InvalidInput("ttl must be positive and at most 30 days")
    return ttl


def override(
    session: Session, environment_id: str, name: str, *, total: int | None = None,
    per_key: int | None = None,
) -> dict[str, Any]:
    """Override the limit's own bounds (those given; the others keep theirs)."""
    limit = get_limit(session, environment_id, name, lock=True)
    values: dict[str, Any] = {"overridden_at": func.now(), "updated_at": func.now()}
    if total is not None:
        values["total_override"] = total
    if per_key is not None:
        values["per_key_override"] = per_key
    session.execute(update(ConcurrencyLimit).where(ConcurrencyLimit.id == limit.id)
                    .values(**values))
    _recap_keys(session, [limit.id])
    admission.refill(session, [limit.id])
    admission.settle(session)
    session.expire(limit)
    return retrieve(session, environment_id, name)


def override_key(
    session: Session, environment_id: str, name: str, key: str, per_key: int,
    ttl: str | int | None,
) -> dict[str, Any]:
    """A temporary per-key cap for ``key`` (``ttl``: default 7 days, at most 30)."""
    lasts = _key_ttl(ttl)
    limit = get_limit(session, environment_id, name, lock=True)
    stmt = pg_insert(ConcurrencyKey).values(
        limit_id=limit.id, key=key, running=0, waiting=0, cap=per_key, override=per_key,
        override_expires_at=func.now() + lasts,
    )
    session.execute(stmt.on_conflict_do_update(
        index_elements=["limit_id", "key"],
        set_={"cap": per_key, "override": per_key,
              "override_expires_at": func.now() + lasts},
    ))
    admission.refill(session, [limit.id])
    admission.settle(session)
    session.expire(limit)
    return retrieve_key(session, environment_id, name, key)


def reset(session: Session, environment_id: str, name: str) -> dict[str, Any]:
    """Back to the declared bounds."""
    limit = get_limit(session, environment_id, name, lock=True)
    session.execute(update(ConcurrencyLimit).where(ConcurrencyLimit.id == limit.id).values(
        total_override=None, per_key_override=None, overridden_at=None, updated_at=func.now()
    ))
    _recap_keys(session, [limit.id])
    admission.refill(session, [limit.id])
    admission.settle(session)
    session.expire(limit)
    return retrieve(session, environment_id, name)


def reset_key(session: Session, environment_id: str, name: str, key: str) -> dict[str, Any]:
    """Clear ``key``'s override (404 if it has none)."""
    limit = get_limit(session, environment_id, name, lock=True)
    row = session.get(ConcurrencyKey, (limit.id, key))
    if row is None or row.override is None:
        raise NotFound(f"Concurrency key {key!r} has no override on limit {name!r}")
    session.execute(text(
        """
        UPDATE concurrency_keys k SET override = NULL, override_expires_at = NULL,
            cap = coalesce(l.per_key_override, l.per_key_base)
        FROM concurrency_limits l WHERE l.id = k.limit_id AND k.limit_id = :id AND k.key = :key
        """
    ), {"id": limit.id, "key": key})
    admission.refill(session, [limit.id])
    admission.settle(session)
    session.expire(row)
    return retrieve_key(session, environment_id, name, key)


def set_paused(session: Session, environment_id: str, name: str, paused: bool) -> dict[str, Any]:
    """Pause (admit nothing; runs executing finish) or resume (admit in order)."""
    limit = get_limit(session, environment_id, name, lock=True)
    session.execute(update(ConcurrencyLimit).where(ConcurrencyLimit.id == limit.id)
                    .values(paused=paused, updated_at=func.now()))
    if not paused:
        admission.refill(session, [limit.id])
    admission.settle(session)
    session.expire(limit)
    return retrieve(session, environment_id, name)
