"""Fixtures for the SDK and CLI tests: a live API and a client bound to a fresh project."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reprise.client import Client
from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer, live_api


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    with live_api() as server:
        yield server


@pytest.fixture
def client(live_server: LiveServer, project: ProjectKeys) -> Iterator[Client]:
    """An SDK client with the project's dev key; fast retries keep failure tests quick."""
    with Client(live_server.base_url, project.keys["dev"], retry_backoff=0.01) as sdk:
        yield sdk
