"""Which runs: :class:`RunFilter`, the one vocabulary a wire filter is read with, and the
SQL that lists, counts and picks the runs a filter matches.

The REST list (``filter[...]``), the dashboard's runs list and a bulk action's filter each
map their fields onto :meth:`RunFilter.build`; they differ only in their field names and in
how they word a refusal (:class:`FilterWording`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, column, exists, func, literal, or_, select, table
from sqlalchemy.orm import Session, aliased

from reprise_server.shared.durations import DurationError, parse_datetime, parse_duration
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runs.fingerprints import fingerprint_sql
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import FAILED_LIKE, RunStatus, statuses_for_filter

# A comma-separated string, or the words one by one (a string in a list is never split).
Words = str | Iterable[str] | None
# A queue as the SDK names one in a filter: ``task/<taskId>`` or a named queue's name (the
# run list's ``filter[queue]``), or ``{"type": "task"|"custom", "name": …}`` (a bulk
# action's ``filter.queue``).
QueueWord = str | dict[str, Any]
Queues = str | Iterable[QueueWord] | dict[str, Any] | None
# ISO-8601 (a date, or a date-time to the minute or finer; UTC unless it names a zone), or
# epoch milliseconds as a number or a string of digits.
Moment = float | str | None


@dataclass(frozen=True)
class FilterWording:
    """How an adapter words a value the filter cannot use: one sentence per field, in the
    adapter's own names for its fields (``{value}`` in ``unknown_status`` is the word)."""

    unknown_status: str
    created_from: str
    created_to: str
    period: str = ""
    queue: str = "queue must be a queue name or {type: task|custom, name}"
    not_replayed: str = "notReplayed must be true or false"


class InvalidFilter(InvalidInput):
    """A filter value the vocabulary has no meaning for (400), in the adapter's words."""


@dataclass(frozen=True)
class RunFilter:
    """Which runs of an environment: every field set narrows (``statuses`` None is any
    status; an empty set is none). Build one from a wire filter with :meth:`build`."""

    statuses: frozenset[RunStatus] | None = None
    task_identifiers: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    is_test: bool | None = None
    batch_id: str | None = None
    replayed_from: str | None = None
    schedule_id: str | None = None
    replays_only: bool = False
    # "Not replayed yet": no replay of the run completed or is still under way (a replay
    # that failed, crashed, expired or was canceled does not count).
    not_replayed: bool = False
    run_ids: tuple[str, ...] = ()
    bulk_action_id: str | None = None
    # The fingerprint of the run's error (:mod:`shared.runs.fingerprints`): an error group.
    error_fingerprint: str | None = None

    @classmethod
    def build(
        cls,
        wording: FilterWording,
        *,
        api_version: str | None,
        statuses: Words = None,
        task_identifiers: Words = None,
        queues: Queues = None,
        tags: Words = None,
        versions: Words = None,
        created_from: Moment = None,
        created_to: Moment = None,
        is_test: bool | str | None = None,
        batch_id: str | None = None,
        schedule_id: str | None = None,
        bulk_action_id: str | None = None,
        replays_only: bool | None = None,
        not_replayed: bool | str | None = None,
        error_fingerprint: str | None = None,
    ) -> RunFilter:
        """A wire filter's values as a filter; raises :class:`InvalidFilter`.

        Status words are either vocabulary of ``api_version`` (grouped words such as
        ``QUEUED`` name several states; a word naming states Reprise never has matches no
        run). Lists come out sorted and without repeats; an empty value (``""``, ``[]``)
        filters nothing. ``is_test`` as a string is true only for ``true`` (any case).
        A queue is its name (``task/<taskId>`` for a task's own), or ``{type, name}``.
        """
        return cls(
            statuses=_statuses(statuses, api_version, wording),
            task_identifiers=words(task_identifiers),
            queues=_queues(queues, wording),
            tags=words(tags),
            versions=words(versions),
            created_from=_moment(created_from, wording.created_from),
            created_to=_moment(created_to, wording.created_to),
            is_test=is_test.lower() == "true" if isinstance(is_test, str) else is_test,
            batch_id=batch_id or None,
            schedule_id=schedule_id or None,
            bulk_action_id=bulk_action_id or None,
            replays_only=bool(replays_only),
            not_replayed=_flag(not_replayed, wording.not_replayed),
            error_fingerprint=(error_fingerprint or "").strip().lower() or None,
        )


def _flag(value: bool | str | None, refusal: str) -> bool:
    """A yes/no filter: a boolean, or ``true``/``false`` (any case) as a string."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if value.strip().lower() in ("true", "1"):
        return True
    if value.strip().lower() in ("false", "0", ""):
        return False
    raise InvalidFilter(refusal)


def _split(value: Words) -> list[str]:
    """The words, in the order given, stripped, empty ones dropped."""
    if value is None:
        return []
    given = value.split(",") if isinstance(value, str) else value
    return [word.strip() for word in given if word.strip()]


def words(value: Words) -> tuple[str, ...]:
    """A list value of a filter: sorted, each word once."""
    return tuple(sorted(set(_split(value))))


def _queue_name(value: QueueWord, wording: FilterWording) -> str:
    if isinstance(value, str):
        return value.strip()
    kind, name = value.get("type"), value.get("name")
    if not isinstance(name, str) or kind not in ("task", "custom") or set(value) - {"type", "name"}:
        raise InvalidFilter(wording.queue)
    if kind == "task" and not name.startswith("task/"):
        return f"task/{name}"
    return name


def _queues(value: Queues, wording: FilterWording) -> tuple[str, ...]:
    """The queues' names, as :func:`words` gives a list."""
    if value is None or isinstance(value, str):
        return words(value)
    items = [value] if isinstance(value, dict) else list(value)
    if not all(isinstance(item, str | dict) for item in items):
        raise InvalidFilter(wording.queue)
    return tuple(sorted({name for item in items if (name := _queue_name(item, wording))}))


# The queue a run waits in: its named queue, else its task's own.
RUN_QUEUE = func.coalesce(Run.queue, literal("task/") + Run.task_identifier)


def _statuses(
    value: Words, api_version: str | None, wording: FilterWording
) -> frozenset[RunStatus] | None:
    names = _split(value)
    if not names:
        return None
    statuses: set[RunStatus] = set()
    for name in names:
        try:
            statuses |= statuses_for_filter(name, api_version)
        except ValueError:
            raise InvalidFilter(wording.unknown_status.format(value=name)) from None
    return frozenset(statuses)


def _moment(value: Moment, refusal: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str) and not value.isdigit():
            return parse_datetime(value)
        milliseconds = int(value) if isinstance(value, str) else value
        return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    except (DurationError, ValueError, OverflowError, OSError):
        raise InvalidFilter(refusal) from None


def parse_period(value: str | None, wording: FilterWording) -> timedelta | None:
    """``created in the last …``: a duration such as ``1d``; None when not given."""
    if not value:
        return None
    try:
        return timedelta(seconds=parse_duration(value))
    except DurationError:
        raise InvalidFilter(wording.period) from None


# The runs a bulk action produced or changed (its items' results), named without importing
# the bulk package, which sits above this one.
_BULK_ITEMS = table("bulk_action_items", column("bulk_action_id"), column("result_run_id"))


# A replay that ended without completing does not make its original "replayed".
_REPLAY = aliased(Run, name="replay")
_REPLAY_DID_NOT_COUNT = [s.value for s in (*FAILED_LIKE, RunStatus.CANCELED)]


def _apply_filter(query: Any, environment_id: str, f: RunFilter) -> Any:
    query = query.where(Run.environment_id == environment_id)
    if f.statuses is not None:
        query = query.where(Run.status.in_(list(f.statuses)))
    if f.task_identifiers:
        query = query.where(Run.task_identifier.in_(f.task_identifiers))
    if f.queues:
        query = query.where(RUN_QUEUE.in_(f.queues))
    if f.tags:
        query = query.where(Run.tags.overlap(list(f.tags)))
    if f.versions:
        query = query.where(Run.version.in_(f.versions))
    if f.created_from is not None:
        query = query.where(Run.created_at >= f.created_from)
    if f.created_to is not None:
        query = query.where(Run.created_at <= f.created_to)
    if f.is_test is not None:
        query = query.where(Run.is_test == f.is_test)
    if f.batch_id is not None:
        query = query.where(Run.batch_id == f.batch_id)
    if f.replayed_from is not None:
        query = query.where(Run.replayed_from == f.replayed_from)
    if f.schedule_id is not None:
        query = query.where(Run.schedule_id == f.schedule_id)
    if f.replays_only:
        query = query.where(Run.replayed_from.is_not(None))
    if f.not_replayed:
        query = query.where(~exists().where(
            _REPLAY.replayed_from == Run.id, _REPLAY.status.not_in(_REPLAY_DID_NOT_COUNT)
        ))
    if f.run_ids:
        query = query.where(Run.id.in_(f.run_ids))
    if f.bulk_action_id is not None:
        query = query.where(Run.id.in_(
            select(_BULK_ITEMS.c.result_run_id).where(
                _BULK_ITEMS.c.bulk_action_id == f.bulk_action_id
            )
        ))
    if f.error_fingerprint is not None:
        query = query.where(fingerprint_sql(Run.error) == f.error_fingerprint)
    return query


def list_runs(
    session: Session,
    environment_id: str,
    run_filter: RunFilter,
    limit: int,
    after: tuple[datetime, str] | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[Run]:
    """Newest first, keyset-paginated on ``(created_at, id)``; ``before`` walks backwards."""
    query = _apply_filter(select(Run), environment_id, run_filter)
    if after is not None:
        at, rid = after
        query = query.where(or_(Run.created_at < at, and_(Run.created_at == at, Run.id < rid)))
    if before is not None:
        at, rid = before
        query = query.where(or_(Run.created_at > at, and_(Run.created_at == at, Run.id > rid)))
        rows = list(
            session.scalars(query.order_by(Run.created_at.asc(), Run.id.asc()).limit(limit))
        )
        rows.reverse()
        return rows
    return list(session.scalars(query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)))


def count_runs(session: Session, environment_id: str, run_filter: RunFilter) -> int:
    query = _apply_filter(select(func.count()).select_from(Run), environment_id, run_filter)
    return int(session.execute(query).scalar_one())


def run_ids_matching(
    session: Session, environment_id: str, run_filter: RunFilter, limit: int
) -> list[str]:
    query = _apply_filter(select(Run.id), environment_id, run_filter)
    return list(session.scalars(query.order_by(Run.created_at.desc()).limit(limit)))
