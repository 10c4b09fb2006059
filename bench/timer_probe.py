"""A raw Celery countdown task: the baseline of promotion lateness (same worker, same
Redis, same ``<prefix>.timers`` queue as the promotion timers). Loaded into the bench
worker with ``celery -A workers.app worker -I bench.timer_probe``; each execution appends how
late it started (seconds after its intended time) to a Redis list."""

from __future__ import annotations

import time
from functools import lru_cache

import redis

from reprise_server.shared.settings import get_settings
from reprise_server.workers.app import app

PROBE = "bench.countdown_probe"
LATENESS_KEY = "bench:countdown-lateness"


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url)


@app.task(name=PROBE)
def countdown_probe(intended: float) -> None:
    _redis().rpush(LATENESS_KEY, f"{time.time() - intended:.6f}")
