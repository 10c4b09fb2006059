"""Helpers shared by the SDK and CLI tests."""

from __future__ import annotations

from reprise.client import Client
from reprise.models import Run
from tests.support.fixtures import wait_for


def wait_for_run(client: Client, run_id: str, *statuses: str) -> Run:
    """Poll the API (not the database) until the run shows one of ``statuses``."""

    def probe() -> Run | None:
        run = client.runs.retrieve(run_id)
        return run if run.status in statuses else None

    return wait_for(probe, what=f"{run_id} to reach {statuses}")
