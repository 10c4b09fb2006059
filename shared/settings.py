"""Settings shared by every process (api, worker, beat, flower, CLI).

One pydantic-settings class, prefix ``REPRISE_``. Everything that differs between dev,
tests and production is a setting. Settings that must be identical across processes
(the broker transport options) are derived here in one place so no process can
disagree with another.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "reprise-dev-secret-do-not-use-in-production"


def normalise_database_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` and pin the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class MissingSettings(RuntimeError):
    """A process was started without settings it cannot do without."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REPRISE_", extra="ignore")

    mode: Literal["dev", "production"] = "dev"
    database_url: str = ""
    redis_url: str = ""
    secret_key: str = ""

    # Workers
    task_modules: str = "examples.tasks"
    worker_version: str = ""
    worker_concurrency: int = 4
    # Threads of `reprise control`: its tasks are short database round trips.
    control_concurrency: int = 8
    # A worker executing a run refreshes its heartbeat this often; a claimed run whose
    # heartbeat is older than ``stale_run_seconds`` (its worker died) is re-executed. Keep
    # the stale window several heartbeats long (README, "Timings").
    worker_heartbeat_seconds: float = 2.5
    stale_run_seconds: float = 10.0
    # How long a worker keeps retrying a step of a run it holds (begin the attempt, write
    # its outcome) while the database is unreachable, before giving the run up to recovery.
    worker_db_retry_seconds: float = 120.0
    retry_backoff_base_seconds: float = 1.0
    retry_backoff_max_seconds: float = 300.0
    cost_per_ms_in_cents: float = 0.0000169
    base_cost_in_cents: float = 0.0025
    queue_prefix: str = "reprise"

    # Broker: the Redis transport's visibility timeout must be the same in every process
    # (api, worker, beat, flower); otherwise one process re-queues another's ETA messages.
    broker_visibility_timeout: int = 3600

    # Timers and sweeps (§7). Only runs due within ``timer_horizon_seconds`` get a Celery
    # ETA message, so a worker holds at most the timers of that window in memory, and no
    # ETA message outlives the visibility timeout (which would make Redis redeliver it).
    timer_horizon_seconds: float = 300.0
    sweep_interval_seconds: float = 2.0
    redispatch_after_seconds: float = 15.0
    command_relay_after_seconds: float = 3.0
    ttl_sweep_batch_size: int = 5000
    max_ttl_seconds: int = 14 * 24 * 3600
    dev_default_ttl_seconds: int = 600

    # API
    # How long an api process trusts a secret key it verified (0: never): a revoked key
    # stops working everywhere within this bound.
    auth_cache_seconds: float = 5.0
    max_body_bytes: int = 10 * 1024 * 1024
    large_payload_bytes: int = 512 * 1024
    request_idempotency_hours: float = 24.0
    jwt_ttl_seconds: int = 3600

    # Operations
    log_format: Literal["json", "text"] | None = None
    # user:password (comma-separated for several users); required outside dev mode.
    flower_basic_auth: str = ""
    # SIGTERM is a warm shutdown (finish running tasks, hand back prefetched and ETA
    # messages); a cold one (SIGQUIT, or a second Ctrl+C) first waits this long for running
    # tasks, then cancels them and hands their messages back (README, "Deploy").
    worker_soft_shutdown_seconds: float = 90.0
    # Port of the worker's Prometheus exporter (0 = off); see shared/exporter.py.
    worker_metrics_port: int = 0
    # Liveness files touched by workers and beat, read by `reprise healthcheck worker|beat`
    # (directory default: the system temp dir).
    liveness_dir: str = ""
    liveness_interval_seconds: float = 5.0
    liveness_max_age_seconds: float = 60.0

    @field_validator("database_url")
    @classmethod
    def _normalise_db(cls, value: str) -> str:
        return normalise_database_url(value) if value else value

    @model_validator(mode="after")
    def _timers_fit_the_visibility_timeout(self) -> Settings:
        # An ETA message held longer than the visibility timeout is redelivered by Redis
        # (and then held twice): every countdown Reprise publishes must stay well under it.
        limit = self.broker_visibility_timeout / 2
        if self.timer_horizon_seconds >= limit:
            raise ValueError(
                f"REPRISE_TIMER_HORIZON_SECONDS ({self.timer_horizon_seconds:g}) must be less "
                f"than half of REPRISE_BROKER_VISIBILITY_TIMEOUT ({self.broker_visibility_timeout})"
            )
        if self.retry_backoff_max_seconds >= limit:
            raise ValueError(
                f"REPRISE_RETRY_BACKOFF_MAX_SECONDS ({self.retry_backoff_max_seconds:g}) must be "
                f"less than half of REPRISE_BROKER_VISIBILITY_TIMEOUT "
                f"({self.broker_visibility_timeout})"
            )
        # A run entering the horizon must be armed by at least one sweep before it is due.
        if self.sweep_interval_seconds >= self.timer_horizon_seconds:
            raise ValueError(
                f"REPRISE_SWEEP_INTERVAL_SECONDS ({self.sweep_interval_seconds:g}) must be less "
                f"than REPRISE_TIMER_HORIZON_SECONDS ({self.timer_horizon_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _stale_window_spans_several_heartbeats(self) -> Settings:
        # One late heartbeat (a GC pause, a slow commit) must not make a live run look
        # abandoned and let a second worker execute it.
        if self.stale_run_seconds < 3 * self.worker_heartbeat_seconds:
            raise ValueError(
                f"REPRISE_STALE_RUN_SECONDS ({self.stale_run_seconds:g}) must be at least 3 x "
                f"REPRISE_WORKER_HEARTBEAT_SECONDS ({self.worker_heartbeat_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _no_secret_defaults_outside_dev(self) -> Settings:
        if not self.secret_key:
            if self.mode != "dev":
                raise ValueError("REPRISE_SECRET_KEY is required outside dev mode")
            self.secret_key = DEV_SECRET
        return self

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("text" if self.mode == "dev" else "json")

    @property
    def broker_transport_options(self) -> dict[str, Any]:
        """Redis transport options: identical for every process that talks to the broker.

        api (producer), worker, beat and flower all build their Celery app through
        :func:`shared.broker.celery_app`, which passes exactly this mapping. The options
        that must agree between processes are here explicitly, not left to library
        defaults that could differ between installed versions: the visibility timeout
        (when unacknowledged messages, ETA timers included, are redelivered) and how
        broadcast messages (worker control, Flower) are keyed.
        """
        return {
            "visibility_timeout": self.broker_visibility_timeout,
            "fanout_prefix": True,
            "fanout_patterns": True,
        }

    def require_urls(self) -> None:
        """Refuse to go on without the stores (SPEC §13): never fall back to a default
        broker or database that happens to run on this machine."""
        missing = [
            name
            for name, value in (
                ("REPRISE_DATABASE_URL", self.database_url),
                ("REPRISE_REDIS_URL", self.redis_url),
            )
            if not value
        ]
        if missing:
            raise MissingSettings(
                f"{' and '.join(missing)} must be set "
                "(or use `reprise dev`, which starts embedded servers)"
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
