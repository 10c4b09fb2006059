"""The Celery app as every process sees it, and the messages Reprise publishes.

api, worker, beat and flower all build their Celery app here, so broker settings (the
Redis transport's ``visibility_timeout`` above all) cannot differ between processes.
Workers add the task implementations (``workers.tasks``); producers publish by task name.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu import Queue  # type: ignore[attr-defined]
from kombu.utils.uuid import uuid
from redis import Redis

from reprise_server.shared import redis_transport
from reprise_server.shared.settings import Settings, get_settings

EXECUTE_RUN = "reprise.execute_run"
PROMOTE_RUN = "reprise.promote_delayed_run"
APPLY_COMMAND = "reprise.apply_command"
APPLY_COMMANDS = "reprise.apply_commands"
PROMOTE_DUE_RUNS = "reprise.promote_due_runs"
EXPIRE_STALE_RUNS = "reprise.expire_stale_runs"
RELAY_PENDING_COMMANDS = "reprise.relay_pending_commands"
RECOVER_STALE_RUNS = "reprise.recover_stale_runs"
FIRE_DUE_SCHEDULES = "reprise.fire_due_schedules"
RELEASE_WAITING_RUNS = "reprise.release_waiting_runs"
ADMIT_WAITING_RUNS = "reprise.admit_waiting_runs"
RESUME_PARKED_RUNS = "reprise.resume_parked_runs"
DELETE_EXPIRED_RUN_LOGS = "reprise.delete_expired_run_logs"
COMPLETE_WAITPOINT = "reprise.complete_waitpoint"
COMPLETE_DUE_WAITPOINTS = "reprise.complete_due_waitpoints"


def queue_names(settings: Settings) -> dict[str, str]:
    """Reprise's own Celery queues: ``runs`` (executions of runs with no queue of their
    own) and the control plane's ``commands``, ``timers`` and ``sweeps``."""
    prefix = settings.queue_prefix
    return {
        "runs": f"{prefix}.runs",
        "commands": f"{prefix}.commands",
        "timers": f"{prefix}.timers",
        "sweeps": f"{prefix}.sweeps",
    }


CONTROL_QUEUES = ("commands", "timers", "sweeps")
DEFAULT_QUEUE = "default"


def control_queues(settings: Settings) -> list[str]:
    """What ``reprise control`` consumes, and ``reprise worker`` never does."""
    names = queue_names(settings)
    return [names[kind] for kind in CONTROL_QUEUES]


def run_queue(settings: Settings, queue: str | None) -> str:
    """The Celery queue of a Reprise queue (a run's ``queue`` option or its task's): each
    has its own, ``<prefix>.runs.<queue>``; a run with no queue (or ``default``) goes to
    ``<prefix>.runs``."""
    return _run_queue(queue_names(settings)["runs"], queue)


def execution_queue(queue: str | None) -> str:
    """The Celery queue a run of the Reprise queue ``queue`` is published to."""
    return _run_queue(celery_app().conf.task_default_queue, queue)


def _run_queue(runs_queue: str, queue: str | None) -> str:
    return runs_queue if not queue or queue == DEFAULT_QUEUE else f"{runs_queue}.{queue}"


def broker_transport(settings: Settings) -> str | None:
    """The kombu transport for the broker URL: Reprise's Redis transport (one client per
    channel, :mod:`shared.redis_transport`) for plain ``redis://`` and ``unix://`` URLs,
    else the one kombu picks from the URL's scheme."""
    scheme = settings.redis_url.partition("://")[0]
    if settings.broker_shared_client and scheme in redis_transport.SCHEMES:
        return redis_transport.TRANSPORT
    return None


def configure_celery(app: Celery, settings: Settings) -> Celery:
    queues = queue_names(settings)
    app.conf.update(
        broker_url=settings.redis_url,
        broker_transport=broker_transport(settings),
        broker_transport_options=settings.broker_transport_options,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        # At-least-once: a message is acknowledged only after the task returns, and a
        # worker that dies mid-task gives its message back. Every task is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Runs can be long: take one message per process at a time so a busy process
        # does not sit on messages another process could start now.
        worker_prefetch_multiplier=1,
        # Workers send task events (received, started, succeeded…: what Flower shows).
        # Publishers send no `task-sent` event: it doubled the cost of every publish
        # (one more Redis PUBLISH per message), and a run waiting in its queue is shown by
        # Reprise itself (QUEUED), not by Flower.
        worker_send_task_events=True,
        task_send_sent_event=False,
        task_queues=[Queue(name) for name in queues.values()],
        task_default_queue=queues["runs"],
        task_routes={
            EXECUTE_RUN: {"queue": queues["runs"]},
            APPLY_COMMAND: {"queue": queues["commands"]},
            APPLY_COMMANDS: {"queue": queues["commands"]},
            PROMOTE_RUN: {"queue": queues["timers"]},
            COMPLETE_WAITPOINT: {"queue": queues["timers"]},
            COMPLETE_DUE_WAITPOINTS: {"queue": queues["sweeps"]},
            PROMOTE_DUE_RUNS: {"queue": queues["sweeps"]},
            EXPIRE_STALE_RUNS: {"queue": queues["sweeps"]},
            RELAY_PENDING_COMMANDS: {"queue": queues["sweeps"]},
            RECOVER_STALE_RUNS: {"queue": queues["sweeps"]},
            FIRE_DUE_SCHEDULES: {"queue": queues["sweeps"]},
            RELEASE_WAITING_RUNS: {"queue": queues["sweeps"]},
            ADMIT_WAITING_RUNS: {"queue": queues["sweeps"]},
            RESUME_PARKED_RUNS: {"queue": queues["sweeps"]},
            DELETE_EXPIRED_RUN_LOGS: {"queue": queues["sweeps"]},
        },
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_concurrency=settings.worker_concurrency,
        # Shutdown (docs/operations.md#shutdown-and-grace-periods). SIGTERM is Celery's warm shutdown: stop consuming,
        # finish the running tasks, and hand prefetched and ETA messages back to Redis when
        # the channel closes. A cold shutdown (SIGQUIT) first lets running tasks go on for
        # this long (the soft shutdown), then cancels them and hands their acks_late
        # messages back. Not when idle: an idle worker has nothing to wait for.
        worker_soft_shutdown_timeout=settings.worker_soft_shutdown_seconds,
        worker_enable_soft_shutdown_on_idle=False,
    )
    return app


@lru_cache(maxsize=1)
def celery_app() -> Celery:
    return configure_celery(Celery("reprise"), get_settings())


# Every execution message carries its publisher's wall clock at publish time: a run
# queue is FIFO, so a run dispatched before its queue's oldest message was published has
# had its message taken already (see :func:`run_queue_evidence`).
PUBLISHED_HEADER = "reprise_published"


def _execution_headers(*, head: bool = False) -> dict[str, Any]:
    headers: dict[str, Any] = {PUBLISHED_HEADER: time.time()}
    if head:
        headers[redis_transport.HEAD_HEADER] = True
    return headers


def dispatch_run(
    run_id: str, queue: str | None, countdown: float | None = None, *, watch: str | None = None
) -> None:
    """Publish the execution of a run to its queue's Celery queue (after the transaction
    that queued it committed).

    ``watch``: the worker holding the run — a delivery that comes back to look at it once
    that worker's heartbeat would have gone stale (see ``workers.tasks.execute_run``)."""
    kwargs = {"watch": watch} if watch else None
    app = celery_app()
    target = _run_queue(app.conf.task_default_queue, queue)
    if _published_directly(app, [(run_id, target, kwargs, countdown, _execution_headers())]):
        return
    app.send_task(
        EXECUTE_RUN, args=[run_id], kwargs=kwargs, countdown=countdown,
        queue=target, headers=_execution_headers(),
    )


def dispatch_runs(runs: Iterable[tuple[str, str | None]], *, head: bool = False) -> None:
    """Publish many executions ``(run_id, queue)`` together (a sweep promotes in
    batches); with ``head``, each at the head of its queue, ahead of the runs waiting
    there (recovered runs: with Reprise's transport, :mod:`shared.redis_transport`;
    kombu's own publishes at the tail)."""
    dispatch_executions([(run_id, queue, None) for run_id, queue in runs], head=head)


def dispatch_executions(
    executions: Iterable[tuple[str, str | None, float | None]], *, head: bool = False
) -> None:
    """Publish many executions ``(run_id, queue, countdown)`` together: with Reprise's
    transport in one Redis round trip, with another over one pooled connection."""
    app = celery_app()
    runs_queue = app.conf.task_default_queue
    targets = [(run_id, _run_queue(runs_queue, queue), countdown)
               for run_id, queue, countdown in executions]
    if not targets:
        return
    if _published_directly(app, [
        (run_id, target, None, countdown, _execution_headers(head=head))
        for run_id, target, countdown in targets
    ]):
        return
    with app.producer_or_acquire() as producer:
        for run_id, target, countdown in targets:
            app.send_task(
                EXECUTE_RUN, args=[run_id], producer=producer, countdown=countdown,
                queue=target, headers=_execution_headers(head=head),
            )


# The options of an execution message's body (protocol 2): no callbacks, no canvas.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _published_directly(
    app: Celery,
    messages: list[tuple[str, str, dict[str, Any] | None, float | None, dict[str, Any]]],
) -> bool:
    """Publish ``(run_id, celery queue, kwargs, countdown, headers)`` executions straight
    onto their Redis lists, through Reprise's transport, as the very messages
    ``send_task`` would write there, several in one Redis round trip; False (nothing
    sent) with any other transport.

    ``send_task`` and kombu's producer spent three quarters of a publish's CPU on what
    does not change between two executions of ``reprise.execute_run`` (routing, option
    merging, declarations, the message's envelope), more than the Redis round trip: the
    api publishes once per trigger, the control process once per replay. The message is
    Celery's task protocol 2 in kombu's Redis envelope, field for field (a test compares
    the two), so any Celery worker consumes it as its own."""
    if not messages or not _redis_transport(app):
        return False
    origin, reply_to = anon_nodename(), app.thread_oid
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        built = [
            (queue, _execution_message(run_id, queue, kwargs or {}, countdown, headers,
                                       origin, reply_to))
            for run_id, queue, kwargs, countdown, headers in messages
        ]
        channel.put_many(built)
    return True


@lru_cache(maxsize=4)
def _redis_transport(app: Celery) -> bool:
    return bool(app.conf.broker_transport == redis_transport.TRANSPORT)


def _execution_message(
    run_id: str, queue: str, kwargs: dict[str, Any], countdown: float | None,
    headers: dict[str, Any], origin: str, reply_to: str,
) -> dict[str, Any]:
    task_id = uuid()
    eta = None
    if countdown:
        eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat()
    body = json.dumps([[run_id], kwargs, _EMBED]).encode()
    return {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": EXECUTE_RUN, "id": task_id, "shadow": None, "eta": eta,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            # Celery's saferepr truncates long values; an id and a worker name are short.
            "argsrepr": repr([run_id]), "kwargsrepr": repr(kwargs), "origin": origin,
            "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None,
            "stamps": {}, **headers,
        },
        "properties": {
            "correlation_id": task_id, "reply_to": reply_to, "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": uuid(),
        },
    }


def arm_timer(run_id: str, token: int, eta: datetime) -> None:
    """Publish a promotion timer carrying the schedule token it is valid for
    (docs/architecture.md#timers)."""
    celery_app().send_task(PROMOTE_RUN, args=[run_id, token], eta=eta)


def arm_timer_in(run_id: str, token: int, seconds: float) -> None:
    """A promotion timer due ``seconds`` from now on this process's clock."""
    celery_app().send_task(PROMOTE_RUN, args=[run_id, token], countdown=seconds)


def arm_timers(timers: Iterable[tuple[str, int, datetime]]) -> None:
    """Publish many promotion timers ``(run_id, token, eta)`` over one connection."""
    app = celery_app()
    with app.producer_or_acquire() as producer:
        for run_id, token, eta in timers:
            app.send_task(PROMOTE_RUN, args=[run_id, token], eta=eta, producer=producer)


def arm_waitpoint_timer(waitpoint_id: str, eta: datetime) -> None:
    """Publish the timer that completes a time's waitpoint (or times a token out) at
    ``eta``; a duplicate or early one is harmless (shared.durable.service.complete_due)."""
    celery_app().send_task(COMPLETE_WAITPOINT, args=[waitpoint_id], eta=eta)


def arm_waitpoint_timer_in(waitpoint_id: str, seconds: float) -> None:
    celery_app().send_task(COMPLETE_WAITPOINT, args=[waitpoint_id], countdown=seconds)


def arm_waitpoint_timers(timers: Iterable[tuple[str, datetime]]) -> None:
    app = celery_app()
    with app.producer_or_acquire() as producer:
        for waitpoint_id, eta in timers:
            app.send_task(COMPLETE_WAITPOINT, args=[waitpoint_id], eta=eta, producer=producer)


def publish_command(command_id: str, countdown: float | None = None) -> None:
    celery_app().send_task(APPLY_COMMAND, args=[command_id], countdown=countdown)


# Commands published together go in messages of at most this many: the control process
# applies one message's commands in one transaction (workers/command_tasks.py).
COMMANDS_PER_MESSAGE = 25


def publish_commands(command_ids: Iterable[str]) -> None:
    """Publish many command applications over one pooled connection, a message per
    :data:`COMMANDS_PER_MESSAGE` of them."""
    ids = list(command_ids)
    app = celery_app()
    with app.producer_or_acquire() as producer:
        for start in range(0, len(ids), COMMANDS_PER_MESSAGE):
            chunk = ids[start:start + COMMANDS_PER_MESSAGE]
            if len(chunk) == 1:
                app.send_task(APPLY_COMMAND, args=chunk, producer=producer)
            else:
                app.send_task(APPLY_COMMANDS, args=[chunk], producer=producer)


# Kombu's Redis transport keeps a queue as a list named after it, plus one list per
# priority step (``<queue>\x06\x16<priority>``), and messages delivered but not yet
# acknowledged (ETA timers held by workers included) in the hash ``unacked``, each
# delivery's time (the consumer's clock) in the sorted set ``unacked_index``.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"


@lru_cache(maxsize=4)
def broker_client(url: str) -> Redis:
    """A plain Redis client on the broker for probes and gauges, with short timeouts (a
    readiness probe or a scrape must answer, not hang on an unreachable server)."""
    return Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def queued_commands() -> int:
    """Command messages waiting in the commands queue right now."""
    app = celery_app()
    queue = app.conf.task_routes[APPLY_COMMAND]["queue"]
    return queue_lengths(broker_client(app.conf.broker_url), [queue])[queue]


# How far a message's publish may trail the ``dispatched_at`` its run was stamped with:
# the stamp is the database's clock when the dispatching transaction began, the publish
# follows its commit on the publisher's clock (clock skew included).
PUBLISH_MARGIN_SECONDS = 2.0
# The messages read at the head of a queue to get past recovery messages waiting there.
_HEAD_WINDOW = 32


@dataclass(frozen=True)
class QueueEvidence:
    """What a run queue shows of the messages waiting in it.

    ``oldest_published``: when the oldest message published at its tail was published
    (None: there is none), or unknown (``known`` False: a message without Reprise's
    stamp, or more recovery messages at the head than one probe reads). A run dispatched
    before that (less :data:`PUBLISH_MARGIN_SECONDS`) has had its message taken: the
    queue is FIFO. ``oldest_run``: the run of that message. ``at_head``: the runs whose
    recovery messages wait at the head."""

    known: bool
    oldest_published: float | None = None
    at_head: frozenset[str] = frozenset()
    oldest_run: str | None = None


UNKNOWN = QueueEvidence(known=False)


def run_queue_evidence(queues: Iterable[str | None]) -> dict[str | None, QueueEvidence]:
    """Each Reprise queue's :class:`QueueEvidence`, read in one round trip (the head of
    each of its lists). Traffic cannot hide a lost message behind it: however busy a
    queue is, its oldest message keeps getting younger while it is worked through."""
    app = celery_app()
    runs_queue = app.conf.task_default_queue
    names = {queue: _run_queue(runs_queue, queue) for queue in queues}
    if not names:
        return {}
    lists = {queue: [name, *(f"{name}{_PRIORITY_SEPARATOR}{s}" for s in _PRIORITY_STEPS)]
             for queue, name in names.items()}
    pipe = broker_client(app.conf.broker_url).pipeline(transaction=False)
    for keys in lists.values():
        for key in keys:
            pipe.lrange(key, -_HEAD_WINDOW, -1)
    heads = iter(pipe.execute())
    return {
        queue: _combine([_list_evidence(next(heads)) for _ in keys])
        for queue, keys in lists.items()
    }


def _list_evidence(head: list[bytes]) -> QueueEvidence:
    """The evidence of one list from its last ``_HEAD_WINDOW`` entries (the right end,
    where consumers pop, comes last)."""
    at_head: set[str] = set()
    for raw in reversed(head):
        message = _decode(raw)
        headers = (message or {}).get("headers") or {}
        if headers.get(redis_transport.HEAD_HEADER) and (run_id := _run_id(message)):
            at_head.add(run_id)
            continue
        published = headers.get(PUBLISHED_HEADER)
        if not isinstance(published, int | float):
            return UNKNOWN
        return QueueEvidence(True, float(published), frozenset(at_head), _run_id(message))
    if len(head) == _HEAD_WINDOW:
        return UNKNOWN
    return QueueEvidence(True, None, frozenset(at_head))


def _combine(lists: list[QueueEvidence]) -> QueueEvidence:
    if not all(e.known for e in lists):
        return UNKNOWN
    oldest = min((e for e in lists if e.oldest_published is not None),
                 key=lambda e: e.oldest_published or 0.0, default=None)
    return QueueEvidence(
        True, None if oldest is None else oldest.oldest_published,
        frozenset().union(*(e.at_head for e in lists)),
        None if oldest is None else oldest.oldest_run,
    )


def _decode(raw: bytes | str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _run_id(message: dict[str, Any] | None) -> str | None:
    """The run an execution message is for (Celery's message protocol 2: the body is
    ``[args, kwargs, embed]``, base64-encoded by kombu's Redis transport)."""
    if not message or (message.get("headers") or {}).get("task") != EXECUTE_RUN:
        return None
    try:
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    return str(args[0]) if args else None


def runs_in_flight(run_ids: Collection[str]) -> dict[str, float]:
    """Runs among ``run_ids`` whose execution message a worker holds unacknowledged
    (reserved, executing, or an ETA it waits for), each with the latest moment one was
    delivered or is due (epoch seconds): a message held long past that is a dead worker's.

    Reads the whole ``unacked`` hash, so it is only called with runs the queues' evidence
    already says are not waiting in a queue (rare: a loss, or a worker slow to start)."""
    wanted = set(run_ids)
    if not wanted:
        return {}
    client = broker_client(celery_app().conf.broker_url)
    held: dict[str, list[tuple[str, float]]] = {}
    for tag, raw in client.hscan_iter(UNACKED_KEY, count=500):
        try:
            message = json.loads(raw)[0]
        except (ValueError, TypeError, IndexError, KeyError):
            continue
        run_id = _run_id(message if isinstance(message, dict) else None)
        if run_id in wanted:
            held.setdefault(run_id, []).append((tag.decode(), _eta(message)))
    if not held:
        return {}
    tags = [tag for entries in held.values() for tag, _ in entries]
    delivered = dict(zip(tags, client.zmscore(UNACKED_INDEX_KEY, tags), strict=True))
    return {
        run_id: max(max(delivered[tag] or 0.0, eta) for tag, eta in entries)
        for run_id, entries in held.items()
    }


def _eta(message: dict[str, Any]) -> float:
    eta = (message.get("headers") or {}).get("eta")
    if not eta:
        return 0.0
    try:
        return datetime.fromisoformat(eta).timestamp()
    except (TypeError, ValueError):
        return 0.0


def queue_lengths(client: Redis, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each Celery queue (every priority list summed), one round trip."""
    names = list(queues)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in _PRIORITY_STEPS:
            pipe.llen(f"{name}{_PRIORITY_SEPARATOR}{step}")
    counts = pipe.execute()
    width = 1 + len(_PRIORITY_STEPS)
    return {name: sum(counts[i * width : (i + 1) * width]) for i, name in enumerate(names)}
