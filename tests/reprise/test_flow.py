"""``reprise.queues`` and ``reprise.concurrency_limits`` (the Python SDK), and ``reprise
queues …`` / ``reprise limits …`` (the CLI, as a subprocess) against a live API.

The test version declares the limits ``task/test-limited`` (total 2, 1 per key) and
``test-shared`` (total 3), and the custom queue ``emails`` (tests/support/tasks.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from reprise.client import Client
from reprise.errors import BadRequestError, NotFoundError
from reprise.models import ConcurrencyLimitItem, ConcurrencyLimitKeyItem, QueueItem
from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

OWN = "task/test-limited"
SHARED = "test-shared"


def test_the_sdk_lists_retrieves_pauses_and_resumes_queues(client: Client) -> None:
    found = list(client.queues.list(per_page=2))
    assert all(isinstance(queue, QueueItem) for queue in found)
    names = [queue.name for queue in found]
    assert names == sorted(names)
    assert {OWN, "task/test-echo", "emails"} <= set(names)

    own = client.queues.retrieve(OWN)
    assert (own.name, own.type, own.version, own.concurrency_limit, own.paused) == (
        OWN, "task", "V2", None, False)
    assert client.queues.retrieve("test-limited", type="task") == own
    assert client.queues.retrieve(own.id) == own
    assert client.queues.retrieve("emails").type == "custom"

    paused = client.queues.pause("emails")
    assert (paused.name, paused.paused) == ("emails", True)
    assert client.queues.retrieve(paused.id).paused
    assert client.queues.resume(paused.id).paused is False
    with pytest.raises(NotFoundError, match="Queue not found"):
        client.queues.retrieve("task/no-such-task")
    with pytest.raises(NotFoundError):
        client.queues.pause("emails", type="task")


def test_the_sdk_reads_and_changes_concurrency_limits(client: Client) -> None:
    found = {limit.name: limit for limit in client.concurrency_limits.list(per_page=1)}
    assert {OWN, SHARED} <= set(found)
    own = client.concurrency_limits.retrieve(OWN)
    assert isinstance(own, ConcurrencyLimitItem)
    assert own == found[OWN]
    assert (own.total.current, own.per_key.current, own.paused) == (2, 1, False)
    assert own.id.startswith("climit_")

    widened = client.concurrency_limits.override(OWN, total=5)
    assert (widened.total.current, widened.total.base, widened.total.override) == (5, 2, 5)
    assert widened.total.overridden_at is not None
    assert widened.per_key.current == 1
    reset = client.concurrency_limits.reset(OWN)
    assert (reset.total.current, reset.total.override) == (2, None)

    now = datetime.now(UTC)
    key = client.concurrency_limits.override(OWN, concurrency_key="user_1", per_key=0,
                                             ttl=timedelta(hours=1))
    assert isinstance(key, ConcurrencyLimitKeyItem)
    assert (key.concurrency_key, key.per_key.current, key.per_key.base) == ("user_1", 0, 1)
    assert key.per_key.expires_at is not None
    assert timedelta(minutes=59) < key.per_key.expires_at - now < timedelta(minutes=61)
    seen = client.concurrency_limits.retrieve(OWN, "user_1")
    assert seen == key
    numeric = client.concurrency_limits.override(OWN, concurrency_key=7, per_key=2, ttl="2h")
    assert numeric.concurrency_key == "7"
    cleared = client.concurrency_limits.reset(OWN, "user_1")
    assert (cleared.per_key.override, cleared.per_key.current) == (None, 1)

    assert client.concurrency_limits.pause(SHARED).paused
    assert client.concurrency_limits.retrieve(SHARED).paused
    assert client.concurrency_limits.resume(SHARED).paused is False

    with pytest.raises(BadRequestError, match="Provide at least one of perKey or total"):
        client.concurrency_limits.override(OWN)
    with pytest.raises(BadRequestError, match="ttl"):
        client.concurrency_limits.override(OWN, concurrency_key="k", per_key=1, ttl="60d")
    with pytest.raises(NotFoundError, match="no-such-limit"):
        client.concurrency_limits.retrieve("no-such-limit")
    assert client.concurrency_limits.retrieve(OWN).total.current == 2


def test_runs_list_filters_by_queue(client: Client) -> None:
    echo = client.tasks.trigger("test-echo", {"n": 1}, delay="1h").id
    named = client.tasks.trigger("test-echo", {"n": 2}, delay="1h", queue="q1").id
    assert [run.id for run in client.runs.list(queue="task/test-echo")] == [echo]
    assert [run.id for run in client.runs.list(queue=["q1"])] == [named]
    assert {run.id for run in client.runs.list(queue=["q1", "task/test-echo"])} == {echo, named}


# --- the CLI, as a subprocess ----------------------------------------------------------


def _cli(server: LiveServer, project: ProjectKeys, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REPRISE_API_URL": server.base_url,
           "REPRISE_API_KEY": project.keys["dev"]}
    return subprocess.run([sys.executable, "-m", "reprise.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def _table(out: str) -> dict[str, list[str]]:
    """The rows of a table by their first cell (cells are split at two or more spaces)."""
    import re

    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip())
                                         for line in out.splitlines()[1:])}


def test_cli_queues_list_get_pause_and_resume(
    live_server: LiveServer, project: ProjectKeys
) -> None:
    done = _cli(live_server, project, "queues", "list")
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split()
    assert header == ["NAME", "TYPE", "RUNNING", "QUEUED", "PAUSED", "ID"]
    rows = _table(done.stdout)
    assert rows[OWN][:5] == [OWN, "task", "0", "0", "no"]
    assert rows["emails"][:5] == ["emails", "custom", "0", "0", "no"]
    assert rows[OWN][5].startswith("queue_")

    done = _cli(live_server, project, "queues", "pause", "test-limited", "--type", "task")
    assert (done.returncode, done.stdout) == (0, f"queue {OWN} paused\n"), done.stderr
    done = _cli(live_server, project, "queues", "get", OWN)
    assert done.returncode == 0, done.stderr
    assert "paused:    yes" in done.stdout
    assert "limit:" not in done.stdout  # V2 queues carry no limit of their own
    done = _cli(live_server, project, "queues", "resume", OWN)
    assert done.stdout == f"queue {OWN} resumed\n"
    done = _cli(live_server, project, "queues", "get", "emails", "--json")
    assert json.loads(done.stdout)["paused"] is False

    done = _cli(live_server, project, "queues", "get", "nowhere")
    assert (done.returncode, done.stdout) == (1, "")
    assert "Queue not found" in done.stderr


def test_cli_limits_list_get_override_reset_pause_and_resume(
    live_server: LiveServer, project: ProjectKeys
) -> None:
    done = _cli(live_server, project, "limits", "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == [
        "NAME", "TOTAL", "PER", "KEY", "RUNNING", "QUEUED", "PAUSED"]
    rows = _table(done.stdout)
    assert rows[OWN] == [OWN, "2", "1", "0", "0", "no"]
    assert rows[SHARED] == [SHARED, "3", "-", "0", "0", "no"]

    done = _cli(live_server, project, "limits", "override", OWN, "--total", "5")
    assert done.returncode == 0, done.stderr
    assert "total:     5 (base 2)" in done.stdout
    assert _table(_cli(live_server, project, "limits", "list").stdout)[OWN][1] == "5 (base 2)"

    done = _cli(live_server, project, "limits", "override", OWN, "--concurrency-key", "u1",
                "--per-key", "0", "--ttl", "1h")
    assert done.returncode == 0, done.stderr
    assert "key:       u1" in done.stdout
    assert "per key:   0 (override until " in done.stdout
    done = _cli(live_server, project, "limits", "get", OWN, "--concurrency-key", "u1", "--json")
    assert json.loads(done.stdout)["perKey"]["override"] == 0
    done = _cli(live_server, project, "limits", "reset", OWN, "--concurrency-key", "u1")
    assert "per key:   1" in done.stdout
    done = _cli(live_server, project, "limits", "reset", OWN)
    assert "total:     2\n" in done.stdout

    done = _cli(live_server, project, "limits", "pause", SHARED)
    assert done.stdout == f"limit {SHARED} paused\n"
    assert "paused:    yes" in _cli(live_server, project, "limits", "get", SHARED).stdout
    assert _cli(live_server, project, "limits", "resume", SHARED).stdout == (
        f"limit {SHARED} resumed\n"
    )

    done = _cli(live_server, project, "limits", "override", OWN)
    assert done.returncode == 2
    assert "--total and/or --per-key" in done.stderr
    done = _cli(live_server, project, "limits", "override", OWN, "--total", "1", "--ttl", "1h")
    assert done.returncode == 2
    done = _cli(live_server, project, "limits", "get", "no-such-limit")
    assert done.returncode == 1
    assert "Concurrency limit not found" in done.stderr
    done = _cli(live_server, project, "limits", "override", OWN, "--concurrency-key", "k",
                "--per-key", "1", "--ttl", "60d")
    assert done.returncode == 1
    assert "ttl" in done.stderr
    assert "(HTTP 400)" in done.stderr
