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
    worker_heartbeat_seconds: float = 5.0
    stale_run_seconds: float = 60.0
    retry_backoff_base_seconds: float = 1.0
    retry_backoff_max_seconds: float = 300.0
    cost_per_ms_in_cents: float = 0.0000169
    base_cost_in_cents: float = 0.0025
    queue_prefix: str = "reprise"

    # Broker: the Redis transport's visibility timeout must be the same in every process
    # (api, worker, beat, flower); otherwise one process re-queues another's ETA messages.
    broker_visibility_timeout: int = 3600

    # Timers and sweeps
    timer_horizon_seconds: float = 300.0
    sweep_interval_seconds: float = 2.0
    redispatch_after_seconds: float = 60.0
    command_relay_after_seconds: float = 3.0
    ttl_sweep_batch_size: int = 5000
    max_ttl_seconds: int = 14 * 24 * 3600
    dev_default_ttl_seconds: int = 600

    # API
    max_body_bytes: int = 10 * 1024 * 1024
    large_payload_bytes: int = 512 * 1024
    request_idempotency_hours: float = 24.0
    jwt_ttl_seconds: int = 3600

    # Operations
    log_format: Literal["json", "text"] | None = None
    flower_basic_auth: str = ""

    @field_validator("database_url")
    @classmethod
    def _normalise_db(cls, value: str) -> str:
        return normalise_database_url(value) if value else value

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
        """Redis transport options: identical for every process that talks to the broker."""
        return {
            "visibility_timeout": self.broker_visibility_timeout,
        }

    def require_urls(self) -> None:
        if not self.database_url or not self.redis_url:
            raise RuntimeError(
                "REPRISE_DATABASE_URL and REPRISE_REDIS_URL must be set "
                "(or use `reprise dev`, which starts embedded servers)"
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
