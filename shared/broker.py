"""The Celery app as every process sees it, and the messages Reprise publishes.

api, worker, beat and flower all build their Celery app here, so broker settings (the
Redis transport's ``visibility_timeout`` above all) cannot differ between processes.
Workers add the task implementations (``workers.tasks``); producers publish by task name.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

from shared.settings import Settings, get_settings

EXECUTE_RUN = "reprise.execute_run"
PROMOTE_RUN = "reprise.promote_delayed_run"
APPLY_COMMAND = "reprise.apply_command"
PROMOTE_DUE_RUNS = "reprise.promote_due_runs"
EXPIRE_STALE_RUNS = "reprise.expire_stale_runs"
RELAY_PENDING_COMMANDS = "reprise.relay_pending_commands"
RECOVER_STALE_RUNS = "reprise.recover_stale_runs"


def queue_names(settings: Settings) -> dict[str, str]:
    prefix = settings.queue_prefix
    return {
        "runs": f"{prefix}.runs",
        "commands": f"{prefix}.commands",
        "timers": f"{prefix}.timers",
        "sweeps": f"{prefix}.sweeps",
    }


def configure_celery(app: Celery, settings: Settings) -> Celery:
    queues = queue_names(settings)
    app.conf.update(
        broker_url=settings.redis_url,
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
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_queues=[Queue(name) for name in queues.values()],
        task_default_queue=queues["runs"],
        task_routes={
            EXECUTE_RUN: {"queue": queues["runs"]},
            APPLY_COMMAND: {"queue": queues["commands"]},
            PROMOTE_RUN: {"queue": queues["timers"]},
            PROMOTE_DUE_RUNS: {"queue": queues["sweeps"]},
            EXPIRE_STALE_RUNS: {"queue": queues["sweeps"]},
            RELAY_PENDING_COMMANDS: {"queue": queues["sweeps"]},
            RECOVER_STALE_RUNS: {"queue": queues["sweeps"]},
        },
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


@lru_cache(maxsize=1)
def celery_app() -> Celery:
    return configure_celery(Celery("reprise"), get_settings())


def dispatch_run(run_id: str, countdown: float | None = None) -> None:
    """Publish the execution of a run (after the transaction that queued it committed)."""
    celery_app().send_task(EXECUTE_RUN, args=[run_id], countdown=countdown)


def arm_timer(run_id: str, token: int, eta: datetime) -> None:
    """Publish a promotion timer carrying the schedule token it is valid for (§7)."""
    celery_app().send_task(PROMOTE_RUN, args=[run_id, token], eta=eta)


def publish_command(command_id: str) -> None:
    celery_app().send_task(APPLY_COMMAND, args=[command_id])
