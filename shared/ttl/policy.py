"""Which TTL a run gets: the trigger's, else the task's, else the environment's
default (dev: ``REPRISE_DEV_DEFAULT_TTL_SECONDS``, 10m; other environments: none),
clamped to ``REPRISE_MAX_TTL_SECONDS``; ``0`` means no TTL."""

from __future__ import annotations

from reprise_server.shared.durations import parse_ttl
from reprise_server.shared.settings import get_settings


def environment_default_ttls() -> dict[str, int | None]:
    """The default TTL of each environment slug, for new environments."""
    return {"dev": get_settings().dev_default_ttl_seconds}


def effective_ttl(
    requested: object, task_default: object, environment_default: int | None
) -> int | None:
    """Seconds of TTL, or None for none; raises DurationError for an unparsable value."""
    ttl = parse_ttl(requested)
    if ttl is None:
        ttl = parse_ttl(task_default)
    if ttl is None:
        ttl = environment_default
    if not ttl:
        return None
    return min(ttl, get_settings().max_ttl_seconds)
