"""Reprise's public Python SDK.

Define tasks with :func:`task`; trigger and manage runs with :data:`tasks` and :data:`runs`
after :func:`configure` (or the ``REPRISE_API_URL`` / ``REPRISE_API_KEY`` environment
variables; ``TRIGGER_API_URL`` / ``TRIGGER_SECRET_KEY`` work too).
"""

from reprise.context import AttemptInfo, RunInfo, TaskContext
from reprise.registry import TaskDefinition, task

__all__ = ["AttemptInfo", "RunInfo", "TaskContext", "TaskDefinition", "task"]

try:  # the HTTP client is optional for worker-only imports
    from reprise.client import ApiError, configure, runs, tasks

    __all__ += ["ApiError", "configure", "runs", "tasks"]
except ImportError:  # pragma: no cover - client module not present
    pass
