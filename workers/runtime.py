"""Worker start-up: load the task modules named in settings and register this version."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from reprise.registry import REGISTRY, Registry
from shared import broker
from shared.db import on_commit, transaction
from shared.projects import service as projects
from shared.runs import repository as runs_repo
from shared.runs.states import RunStatus
from shared.settings import get_settings

log = logging.getLogger("reprise.worker")


@dataclass
class WorkerIdentity:
    name: str
    version: str
    registry: Registry


_identity: WorkerIdentity | None = None


def load_task_modules(modules: str) -> Registry:
    for name in (m.strip() for m in modules.split(",")):
        if name:
            importlib.import_module(name)
    return REGISTRY


def default_version(registry: Registry) -> str:
    """``YYYYMMDD.<hash>``: the same code gives the same version, new code a new one."""
    digest = hashlib.sha256()
    for task_id, definition in sorted(registry.tasks.items()):
        digest.update(task_id.encode())
        try:
            digest.update(inspect.getsource(definition.fn).encode())
        except (OSError, TypeError):
            digest.update(repr(definition.fn).encode())
    return f"{datetime.now(UTC):%Y%m%d}.{digest.hexdigest()[:8]}"


def register_version(
    registry: Registry, version: str, env_slugs: list[str], project_id: str | None = None
) -> int:
    """Register the catalogue and queue the PENDING_VERSION runs it can now execute."""
    catalogue = registry.catalogue()
    released = 0
    with transaction() as session:
        env_ids = projects.register_worker_version(
            session, version, catalogue, env_slugs, project_id
        )
        for env_id in env_ids:
            for run_id in runs_repo.pending_version_runs(session, env_id, list(catalogue)):
                queued = runs_repo.transition(
                    session,
                    run_id,
                    RunStatus.QUEUED,
                    sources={RunStatus.PENDING_VERSION},
                    values=runs_repo.entering_queue_values(),
                )
                if queued is not None:
                    released += 1
                    on_commit(session, partial(broker.dispatch_run, run_id))
    return released


def boot() -> WorkerIdentity:
    """Load tasks and register this worker's version once per process."""
    global _identity
    if _identity is None:
        settings = get_settings()
        registry = load_task_modules(settings.task_modules)
        version = settings.worker_version or default_version(registry)
        released = register_version(registry, version, ["dev", "staging", "prod"])
        _identity = WorkerIdentity(
            name=f"{socket.gethostname()}:{os.getpid()}", version=version, registry=registry
        )
        log.info(
            "worker registered version %s with %d tasks; %d waiting runs queued",
            version, len(registry.tasks), released,
        )
    return _identity


def identity() -> WorkerIdentity:
    return boot()


def reset_identity() -> None:
    global _identity
    _identity = None
