"""Runs executed in the bench's own process through the worker's path
(``workers.execution.execute_run``: claim, attempt, heartbeat, capture, outcome), one after
another, each triggered beforehand, and the CPU they cost: this process's (every thread)
and, on embedded Postgres, its backends' (from ``/proc``)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import psutil


def postgres_processes() -> list[psutil.Process]:
    """The embedded Postgres's processes (its postmaster holds a bench's data dir)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "reprise-bench-" in cmdline and "postgres" in (proc.info.get("name") or ""):
            return [proc, *proc.children(recursive=True)]
    return []


def cpu_of(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


class InProcess:
    """A project of its own with ``task_modules`` registered as ``version`` in dev."""

    def __init__(self, task_modules: str, version: str, slug: str) -> None:
        from reprise_server.shared.db import transaction
        from reprise_server.shared.projects import repository as projects_repo
        from reprise_server.shared.projects.service import AuthContext, ensure_project
        from reprise_server.workers.runtime import load_task_modules, register_version

        self.version = version
        self.registry = load_task_modules(task_modules)
        with transaction() as session:
            project = ensure_project(session, f"{slug}-{secrets.token_hex(3)}")
            env = projects_repo.get_environment(session, project.id, "dev")
            assert env is not None
            self.auth = AuthContext(project.id, env.id, "dev")
        register_version(self.registry, version, ["dev"], project.id)
        self.postgres = postgres_processes()

    def trigger(self, task_id: str, count: int, payload: Any) -> list[str]:
        """``count`` runs, committed and not published (this process executes them)."""
        from reprise_server.shared.db import discard_after_commit, transaction
        from reprise_server.shared.runs.schemas import TriggerOptions
        from reprise_server.shared.runs.service import trigger_run

        with transaction() as session:
            ids = [trigger_run(session, self.auth, task_id, payload, TriggerOptions()).run.id
                   for _ in range(count)]
            discard_after_commit(session)
        return ids

    def execute(self, run_ids: list[str], expect: str = "COMPLETED") -> tuple[float, float]:
        """Execute each run once; (this process's CPU, Postgres's CPU) in ms, in all."""
        from reprise_server.workers import execution

        pg_before, before = cpu_of(self.postgres), time.process_time()
        for run_id in run_ids:
            outcome = execution.execute_run(run_id, self.registry, "bench-worker", self.version)
            assert outcome.status == expect, outcome
        return (time.process_time() - before) * 1000, (cpu_of(self.postgres) - pg_before) * 1000
