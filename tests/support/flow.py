"""Flow control in tests: the execution ledger the ``flow-`` tasks write
(tests/support/tasks.py), the admission state of a limit as Postgres holds it, and the
check that every counter agrees with the rows it counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.support import triggers
from tests.support.fixtures import ProjectKeys


@dataclass
class Ledger:
    """The ``enter``/``exit`` lines of every execution, in the order they happened, and
    the ``killed`` lines a test writes once it killed processes (the executions inside
    them ended there, without an ``exit``)."""

    path: Path

    def events(self) -> list[tuple[str, str, int, str, int]]:
        """``(event, run id, attempt, key, pid)`` in order."""
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            event, run_id, attempt, key, pid = line.split()
            rows.append((event, run_id, int(attempt), "" if key == "-" else key, int(pid)))
        return rows

    def killed(self, pids: list[int]) -> None:
        """Record that the processes ``pids`` are gone (call once they are)."""
        from tests.support.tasks import flow_ledger

        for pid in pids:
            flow_ledger(str(self.path), f"killed - 0 - {pid}")

    def _replay(self) -> Iterator[tuple[set[tuple[str, int, int]], dict[tuple[str, int, int], str]]]:
        inside: set[tuple[str, int, int]] = set()
        keys: dict[tuple[str, int, int], str] = {}
        for event, run_id, attempt, key, pid in self.events():
            if event == "enter":
                inside.add((run_id, attempt, pid))
                keys[(run_id, attempt, pid)] = key
            elif event == "exit":
                inside.discard((run_id, attempt, pid))
            else:  # killed
                inside = {e for e in inside if e[2] != pid}
            yield inside, keys

    def peak(self) -> int:
        """The most executions inside the function at once."""
        return max((len(inside) for inside, _ in self._replay()), default=0)

    def peak_per_key(self) -> dict[str, int]:
        peak: dict[str, int] = {}
        for inside, keys in self._replay():
            for key, n in Counter(keys[e] for e in inside).items():
                peak[key] = max(peak.get(key, 0), n)
        return peak

    def entered(self) -> list[str]:
        """Run ids in the order their executions entered (one per execution)."""
        return [run_id for event, run_id, *_ in self.events() if event == "enter"]

    def inside(self) -> set[str]:
        """Runs inside the function now."""
        last: set[tuple[str, int, int]] = set()
        for inside, _ in self._replay():
            last = inside
        return {run_id for run_id, _, _ in last}

    def pids_inside(self) -> set[int]:
        last: set[tuple[str, int, int]] = set()
        for inside, _ in self._replay():
            last = inside
        return {pid for _, _, pid in last}


def limit_id(project: ProjectKeys, name: str, env: str = "dev") -> str:
    from reprise_server.shared.flow.admission import limit_id as of

    return of(project.environment_ids[env], name)


def trigger(project: ProjectKeys, task: str, count: int, *, publish: bool = True,
            payload: dict[str, Any] | None = None, **options: Any) -> list[str]:
    return [
        triggers.in_db(project, task, publish=publish, payload=payload or {}, **options)
        for _ in range(count)
    ]


def _queued() -> Iterator[tuple[bytes, str | None]]:
    """Each message waiting in the run queue, with the run id it carries."""
    from reprise_server.shared import broker

    app = broker.celery_app()
    client = broker.broker_client(app.conf.broker_url)
    for raw in client.lrange(app.conf.task_default_queue, 0, -1):
        yield raw, broker._run_id(broker._decode(raw))


def take_messages(run_ids: list[str]) -> None:
    """Take the execution messages of these runs out of the run queue, as a worker that
    received them and died would (or a Redis flush): only the recovery sweep brings them
    back. Without this, a run whose message still waits in its queue is not lost."""
    from reprise_server.shared import broker

    app = broker.celery_app()
    client = broker.broker_client(app.conf.broker_url)
    for raw, run_id in list(_queued()):
        if run_id in run_ids:
            client.lrem(app.conf.task_default_queue, 1, raw)


def messages(run_ids: list[str]) -> list[str]:
    """The run ids among ``run_ids`` with an execution message waiting in the run queue."""
    return [run_id for _, run_id in _queued() if run_id in run_ids]


@dataclass(frozen=True)
class LimitState:
    running: int  # the limit's counter
    slots: int  # slot rows
    waiting: int  # line rows
    keys: dict[str, tuple[int, int]]  # per key: (running, waiting) counters


def state(lid: str) -> LimitState:
    from reprise_server.shared.db import transaction

    with transaction() as session:
        running = session.execute(
            text("SELECT running FROM concurrency_limits WHERE id = :id"), {"id": lid}
        ).scalar_one()
        slots = session.execute(
            text("SELECT count(*) FROM concurrency_slots WHERE limit_id = :id"), {"id": lid}
        ).scalar_one()
        waiting = session.execute(
            text("SELECT count(*) FROM admission_line WHERE limit_id = :id"), {"id": lid}
        ).scalar_one()
        keys = {
            key: (int(r), int(w)) for key, r, w in session.execute(
                text("SELECT key, running, waiting FROM concurrency_keys WHERE limit_id = :id"),
                {"id": lid},
            )
        }
    return LimitState(int(running), int(slots), int(waiting), keys)


# Every counter disagreeing with the rows it counts, and every slot or place in line held
# by a run that should not hold it: each row returned names one.
_DRIFT = text(
    """
    SELECT 'limit.running', l.id, '', l.running,
           (SELECT count(*) FROM concurrency_slots s WHERE s.limit_id = l.id)
    FROM concurrency_limits l WHERE l.id = ANY(:ids)
      AND l.running <> (SELECT count(*) FROM concurrency_slots s WHERE s.limit_id = l.id)
    UNION ALL
    SELECT 'key.running', k.limit_id, k.key, k.running,
           (SELECT count(*) FROM concurrency_slots s WHERE s.limit_id = k.limit_id AND s.key = k.key)
    FROM concurrency_keys k WHERE k.limit_id = ANY(:ids)
      AND k.running <> (SELECT count(*) FROM concurrency_slots s
                        WHERE s.limit_id = k.limit_id AND s.key = k.key)
    UNION ALL
    SELECT 'key.waiting', k.limit_id, k.key, k.waiting,
           (SELECT count(*) FROM admission_line a WHERE a.limit_id = k.limit_id AND a.key = k.key)
    FROM concurrency_keys k WHERE k.limit_id = ANY(:ids)
      AND k.waiting <> (SELECT count(*) FROM admission_line a
                        WHERE a.limit_id = k.limit_id AND a.key = k.key)
    UNION ALL
    SELECT 'key.head_rank', k.limit_id, k.key, 0, 0
    FROM concurrency_keys k WHERE k.limit_id = ANY(:ids)
      AND k.head_rank IS DISTINCT FROM (SELECT min(rank) FROM admission_line a
                                         WHERE a.limit_id = k.limit_id AND a.key = k.key)
    UNION ALL
    SELECT 'slot of ' || r.status || '/' || coalesce(r.admission, '-'), s.limit_id, r.id, 0, 0
    FROM concurrency_slots s JOIN runs r ON r.id = s.run_id
    WHERE s.limit_id = ANY(:ids) AND (r.admission IS NOT NULL
          OR r.status NOT IN ('QUEUED', 'DEQUEUED', 'EXECUTING', 'RETRYING'))
      -- canceled while executing: held until its worker has stopped it
      AND NOT coalesce(r.status = 'CANCELED' AND r.locked_by IS NOT NULL
                       AND r.heartbeat_at > now() - make_interval(secs => :stale), false)
    UNION ALL
    SELECT 'line of ' || r.status || '/' || coalesce(r.admission, '-'), a.limit_id, r.id, 0, 0
    FROM admission_line a JOIN runs r ON r.id = a.run_id
    WHERE a.limit_id = ANY(:ids) AND (r.admission IS DISTINCT FROM 'waiting'
          OR r.status NOT IN ('QUEUED', 'RETRYING'))
    """
)


def drift(*lids: str) -> list[tuple[Any, ...]]:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.settings import get_settings

    with transaction() as session:
        stale = get_settings().stale_run_seconds
        return [tuple(row) for row in session.execute(_DRIFT, {"ids": list(lids),
                                                                "stale": stale})]


def assert_consistent(*lids: str) -> None:
    """Counters agree with the slots and the line; only admitted runs hold slots, only
    waiting runs stand in line."""
    found = drift(*lids)
    assert not found, found


def admission_of(run_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """``id -> (status, admission)``."""
    from reprise_server.shared.db import transaction

    with transaction() as session:
        rows = session.execute(
            text("SELECT id, status, admission FROM runs WHERE id = ANY(:ids)"), {"ids": run_ids}
        )
        return {run_id: (status, adm) for run_id, status, adm in rows}


def admitted(run_ids: list[str]) -> list[str]:
    """The runs of ``run_ids`` that hold their slots (admitted, not yet ended)."""
    from reprise_server.shared.db import transaction

    with transaction() as session:
        rows = session.execute(
            text("SELECT DISTINCT run_id FROM concurrency_slots WHERE run_id = ANY(:ids)"),
            {"ids": run_ids},
        )
        return sorted(r[0] for r in rows)
