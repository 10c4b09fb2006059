"""Worker start-up: load the task modules named in settings and register this version."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import os
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

from reprise.registry import REGISTRY, Registry
from reprise_server.shared.db import transaction
from reprise_server.shared.settings import get_settings
from reprise_server.shared.versions import service as versions

log = logging.getLogger("reprise.worker")


@dataclass
class WorkerIdentity:
    name: str
    version: str
    registry: Registry


_identity: WorkerIdentity | None = None


def process_name() -> str:
    """``<hostname>:<pid>``: who applied a command, who holds a run (prefork children
    share their parent's, which is set before they fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def load_task_modules(modules: str) -> Registry:
    """Import the named modules and return a registry of the tasks they (and their
    submodules) define — the worker's own, not every task this process ever imported.

    The current directory is put on the import path first, as ``celery -A`` does: a console
    script's path holds only its own environment, and a project runs its worker from its
    own directory."""
    _put_current_directory_on_path()
    names = [m.strip() for m in modules.split(",") if m.strip()]
    for name in names:
        importlib.import_module(name)
    registry = Registry()
    for definition in REGISTRY.tasks.values():
        module = getattr(definition.fn, "__module__", "") or ""
        if any(module == name or module.startswith(f"{name}.") for name in names):
            registry.add(definition)
    return registry


def _put_current_directory_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


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


# Waiting runs released per transaction: a backlog of any size is released without
# holding one transaction (and its row locks) for the whole of it.
RELEASE_BATCH_SIZE = 1000


def register_version(
    registry: Registry, version: str, env_slugs: list[str], project_id: str | None = None
) -> int:
    """Register the catalogue (one transaction), then queue every PENDING_VERSION run it
    can now execute, a batch per transaction, each batch published after its commit.
    Returns how many were queued.

    Interrupted between batches, the catalogue is registered and the runs not yet released
    keep waiting: the next registration releases them (every worker process registers
    when it boots, a restarted one included)."""
    catalogue = registry.catalogue()
    with transaction() as session:
        environment_ids = versions.register_worker_version(
            session, version, catalogue, env_slugs, project_id
        )
    with transaction() as session:
        waiting = versions.environments_with_waiting_runs(
            session, environment_ids, list(catalogue)
        )
    released = 0
    for environment_id in waiting:
        while True:
            with transaction() as session:
                batch = versions.release_waiting_runs(
                    session, environment_id, list(catalogue), RELEASE_BATCH_SIZE
                )
            released += len(batch)
            if len(batch) < RELEASE_BATCH_SIZE:
                break
    return released


def declared_queues(registry: Registry) -> list[str]:
    """The Reprise queues the registry's tasks declare (``@task(queue=…)``), sorted."""
    return sorted({d.queue for d in registry.tasks.values() if d.queue})


def boot(registry: Registry | None = None) -> WorkerIdentity:
    """Register this worker once per process, with ``registry`` (default: the tasks of
    ``REPRISE_TASK_MODULES``). Only run-executing workers boot: the control process never
    loads or registers user code."""
    global _identity
    if _identity is None:
        settings = get_settings()
        registry = registry or load_task_modules(settings.task_modules)
        version = settings.worker_version or default_version(registry)
        released = register_version(registry, version, ["dev", "staging", "prod"])
        _identity = WorkerIdentity(name=process_name(), version=version, registry=registry)
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
