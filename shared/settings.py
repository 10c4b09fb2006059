"""Settings shared by every process (api, worker, beat, flower, CLI).

One pydantic-settings class, prefix ``REPRISE_``. Everything that differs between dev,
tests and production is a setting. Settings that must be identical across processes
(the broker transport options) are derived here in one place so no process can
disagree with another.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
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

    mode: Literal["dev", "production"] = Field(
        default="dev",
        description=(
            "`production` requires REPRISE_SECRET_KEY and Flower basic auth, and logs JSON"
        ),
    )
    database_url: str = Field(
        default="",
        description=(
            "Postgres URL (`postgres://`, `postgresql://` accepted); required outside `reprise dev`"
        ),
    )
    # The api runs its sync routes on up to 40 threads (anyio's default), each holding a
    # connection while it answers: a pool smaller than the requests a process answers at
    # once opens (and Postgres forks a backend for) a new connection per request above it.
    database_pool_size: int = Field(
        default=20, ge=1, description="Postgres connections each process keeps open"
    )
    database_max_overflow: int = Field(
        default=20, ge=0,
        description="connections a process opens beyond its pool in a burst, closed once returned",
    )
    redis_url: str = Field(
        default="", description="Redis URL, the Celery broker; required outside `reprise dev`"
    )
    secret_key: str = Field(
        default="", description="signs public tokens and packet URLs; required outside dev"
    )

    # Workers
    task_modules: str = Field(
        default="reprise_server.examples.tasks",
        description="comma-separated modules whose tasks workers load",
    )
    worker_version: str = Field(
        default="",
        description=(
            "the version workers register (default `YYYYMMDD.<hash of the task sources>`)"
        ),
    )
    worker_concurrency: int = Field(default=4, description="execution slots per worker")
    # Threads of `reprise control`: its tasks are short database round trips.
    control_concurrency: int = Field(default=8, description="threads of `reprise control`")
    # A worker executing a run refreshes its heartbeat this often; a claimed run whose
    # heartbeat is older than ``stale_run_seconds`` (its worker died) is re-executed. Keep
    # the stale window several heartbeats long (docs/operations.md#timings).
    worker_heartbeat_seconds: float = Field(
        default=2.5, description="how often a worker executing a run refreshes its heartbeat"
    )
    stale_run_seconds: float = Field(
        default=10.0,
        description=(
            "a claimed run without a heartbeat this long is re-executed (at least 3 heartbeats)"
        ),
    )
    # A limited run's finishing transaction admits the next run waiting under its limit;
    # the worker executes that run itself, in the slot just freed, instead of publishing
    # it, and so on for this long before it publishes the next one (docs/concurrency.md).
    worker_handoff_seconds: float = Field(
        default=1.0, ge=0,
        description=(
            "how long a worker may go on starting the runs its finishing runs admit "
            "before publishing them instead (0: always publish)"
        ),
    )
    # How long a worker keeps retrying a step of a run it holds (begin the attempt, write
    # its outcome) while the database is unreachable, before giving the run up to recovery.
    worker_db_retry_seconds: float = Field(
        default=120.0,
        description=(
            "how long a worker holding a run retries a step while Postgres is unreachable"
        ),
    )
    retry_backoff_base_seconds: float = Field(
        default=1.0, description="retry backoff: base x 2^(attempt-1)"
    )
    retry_backoff_max_seconds: float = Field(
        default=300.0, description="retry backoff cap (under half the visibility timeout)"
    )
    cost_per_ms_in_cents: float = Field(
        default=0.0000169, description="`costInCents` per millisecond of execution"
    )
    base_cost_in_cents: float = Field(default=0.0025, description="`baseCostInCents` of a run")
    queue_prefix: str = Field(
        default="reprise",
        description=(
            "Celery queues `<prefix>.runs[.<queue>]`, `.commands`, `.timers`, `.sweeps`"
        ),
    )

    # Broker: the Redis transport's visibility timeout must be the same in every process
    # (api, worker, beat, flower); otherwise one process re-queues another's ETA messages.
    broker_visibility_timeout: int = Field(
        default=3600,
        description=(
            "Redis redelivers unacknowledged messages after this; identical in every process"
        ),
    )
    # kombu builds a redis-py client per command; Reprise's transport keeps one per
    # channel (shared/redis_transport.py). `false` is kombu's stock Redis transport.
    broker_shared_client: bool = Field(
        default=True,
        description="one Redis client per broker channel instead of one per command",
    )

    # Timers and sweeps (docs/architecture.md#timers). Only runs due within ``timer_horizon_seconds`` get a Celery
    # ETA message, so a worker holds at most the timers of that window in memory, and no
    # ETA message outlives the visibility timeout (which would make Redis redeliver it).
    timer_horizon_seconds: float = Field(
        default=300.0,
        description=(
            "runs due within this get a Celery ETA timer (under half the visibility timeout)"
        ),
    )
    sweep_interval_seconds: float = Field(default=2.0, description="every sweep runs this often")
    redispatch_after_seconds: float = Field(
        default=15.0,
        description=(
            "a queued run whose message is lost is republished after this (once its queue's"
            " oldest message is younger than it)"
        ),
    )
    command_relay_after_seconds: float = Field(
        default=3.0, description="a pending command whose message may be lost is republished after this"
    )
    ttl_sweep_batch_size: int = Field(
        default=5000, description="runs expired per statement by the TTL sweep"
    )
    max_ttl_seconds: int = Field(default=14 * 24 * 3600, description="longest TTL a run may have")
    dev_default_ttl_seconds: int = Field(
        default=600, description="TTL of runs in the dev environment when none is given"
    )

    # API
    # How long an api process trusts a secret key it verified (0: never): a revoked key
    # stops working everywhere within this bound.
    auth_cache_seconds: float = Field(
        default=5.0,
        description=(
            "how long an api process trusts a key it verified (a revoked key stops working within this; 0: off)"
        ),
    )
    max_body_bytes: int = Field(default=10 * 1024 * 1024, description="larger requests get 413")
    large_payload_bytes: int = Field(
        default=512 * 1024, description="larger payloads and outputs are served through presigned URLs"
    )
    request_idempotency_hours: float = Field(
        default=24.0, description="how long `x-trigger-request-idempotency-key` is honoured"
    )
    jwt_ttl_seconds: int = Field(default=3600, description="lifetime of public access tokens")
    bulk_batch_size: int = Field(
        default=500, ge=1, le=5000,
        description="runs a bulk action acts on per batch (one transaction on the control process)",
    )
    dashboard_session_hours: float = Field(
        default=12.0, gt=0, description="how long a dashboard sign-in lasts"
    )

    # Packets: payloads the SDK offloads (>= 128 KiB) through PUT /api/v2/packets/{path}
    packet_store: Literal["postgres", "s3"] = Field(
        default="postgres",
        description="where uploaded packets are kept: `postgres` (a table) or `s3` (a bucket)",
    )
    max_packet_bytes: int = Field(
        default=10 * 1024 * 1024, description="larger packet uploads get 413"
    )
    packet_url_seconds: int = Field(
        default=300, description="lifetime of signed packet upload and download URLs"
    )
    s3_bucket: str = Field(default="", description="bucket of the `s3` packet store")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph…); default: AWS"
    )
    s3_region: str = Field(default="us-east-1", description="region of the `s3` packet store")
    s3_access_key_id: str | None = Field(
        default=None, description="S3 access key (default: boto3's credential chain)"
    )
    s3_secret_access_key: str | None = Field(default=None, description="S3 secret key")
    s3_key_prefix: str = Field(default="packets/", description="prefix of packet object keys")

    # Operations
    log_format: Literal["json", "text"] | None = Field(
        default=None, description="`json` or `text` (default: text in dev, JSON otherwise)"
    )
    # user:password (comma-separated for several users); required outside dev mode.
    flower_basic_auth: str = Field(
        default="", description="`user:password` (comma-separated for several); required outside dev"
    )
    # Where operators open Flower; the dashboard's header links to it when set.
    flower_url: str = Field(
        default="",
        description="Flower's address for operators; the dashboard links to it when set "
                    "(`reprise dev` sets it)",
    )
    # SIGTERM is a warm shutdown (finish running tasks, hand back prefetched and ETA
    # messages); a cold one (SIGQUIT, or a second Ctrl+C) first waits this long for running
    # tasks, then cancels them and hands their messages back (docs/operations.md#shutdown-and-grace-periods).
    worker_soft_shutdown_seconds: float = Field(
        default=90.0, description="a cold shutdown lets running tasks go on this long"
    )
    # Port of the worker's Prometheus exporter (0 = off); see shared/exporter.py.
    worker_metrics_port: int = Field(
        default=0, description="port of a worker's Prometheus exporter (0: off)"
    )
    # Liveness files touched by workers and beat, read by `reprise healthcheck worker|beat`
    # (directory default: the system temp dir).
    liveness_dir: str = Field(
        default="",
        description=(
            "directory of the liveness files of `reprise healthcheck` (default: the temp dir; `reprise dev`: its data dir)"
        ),
    )
    liveness_interval_seconds: float = Field(
        default=5.0, description="how often workers, control and beat touch their liveness file"
    )
    liveness_max_age_seconds: float = Field(
        default=60.0, description="`reprise healthcheck` fails once the file is older than this"
    )

    # Run logs: what a task writes during an attempt (logging, stdout/stderr, ctx.logger),
    # captured by the worker and written to ``run_logs`` in batches (docs/tasks.md#logs).
    run_log_capture: bool = Field(
        default=True, description="capture what tasks log and print into the run's log (`false`: off)"
    )
    run_log_max_lines: int = Field(
        default=10_000,
        description="lines kept per run; past it one `truncated` line is written and the rest dropped",
    )
    run_log_flush_lines: int = Field(
        default=500, description="a worker writes captured lines once this many are waiting"
    )
    run_log_flush_ms: int = Field(
        default=200, description="…or once the oldest waiting line is this old (ms)"
    )
    run_log_retention_days: float = Field(
        default=30.0, description="run log lines older than this are deleted by a sweep (0: kept)"
    )
    run_log_sweep_batch_size: int = Field(
        default=5000, description="run log lines deleted per statement by the retention sweep"
    )

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
    def _s3_store_names_its_bucket(self) -> Settings:
        if self.packet_store == "s3" and not self.s3_bucket:
            raise ValueError("REPRISE_PACKET_STORE=s3 needs REPRISE_S3_BUCKET")
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
        """Refuse to go on without the stores (docs/operations.md#processes): never fall back to a default
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


def settings_table() -> str:
    """The settings table of docs/operations.md, from this class (a test keeps it in step)."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "—" if default in ("", None) else f"`{default}`"
        rows.append(f"| `REPRISE_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
