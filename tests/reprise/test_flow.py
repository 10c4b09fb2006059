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


def _stored_options(run_id: str) -> tuple[str | None, int, list[str] | None]:
    """The run's ``(concurrency_key, priority, concurrency_limits)`` as Postgres holds them."""
    from reprise_server.shared.runs.models import Run
    from tests.support.durable_rows import stored

    run = stored(Run, run_id)
    return run.concurrency_key, run.priority, run.concurrency_limits


def test_the_sdk_triggers_with_a_numeric_key_a_priority_and_named_limits(
    client: Client,
) -> None:
    """Every flow option of a trigger reaches the server: the runs stand in line under
    key "7" of the task's own limit and under the named limit they name, and the one with
    a priority is admitted first. (The limit is paused while they are triggered, so what
    is admitted does not depend on a worker being there.)"""
    from tests.support.tasks import gate

    client.concurrency_limits.pause(OWN)
    hold = {"hold": f"sdk-flow-{os.getpid()}-{id(client)}"}
    plain = [client.tasks.trigger("test-limited", hold, concurrency_key=7,
                                  concurrency=[SHARED]).id for _ in range(2)]
    urgent = client.tasks.trigger("test-limited", hold, concurrency_key=7, priority=60,
                                  concurrency=SHARED).id
    try:
        assert _stored_options(plain[0]) == ("7", 0, [OWN, SHARED])
        assert _stored_options(urgent) == ("7", 60, [OWN, SHARED])
        key = client.concurrency_limits.retrieve(OWN, 7)
        assert (key.concurrency_key, key.running) == ("7", 0)
        assert client.concurrency_limits.retrieve(OWN).queued == 3
        assert client.concurrency_limits.retrieve(SHARED).queued == 3
        client.concurrency_limits.resume(OWN)
        # One per key: the urgent run first, though it was triggered last.
        assert client.concurrency_limits.retrieve(OWN, "7").running == 1
        assert client.concurrency_limits.retrieve(OWN).queued == 2
        assert [r for r in (*plain, urgent) if _admitted(r)] == [urgent]
    finally:
        gate(f"{hold['hold']}:release").set()

    # No named limit at all for one run (its own limit is kept); an unknown name is a 400.
    alone = client.tasks.trigger("test-limited", {"n": 1}, delay="1h", concurrency=[]).id
    assert _stored_options(alone) == (None, 0, [OWN])
    with pytest.raises(BadRequestError, match="no-such-limit"):
        client.tasks.trigger("test-limited", {"n": 1}, concurrency=["no-such-limit"])


def _admitted(run_id: str) -> bool:
    """The run holds its slots (admitted, not yet ended)."""
    from tests.support import flow

    return flow.admitted([run_id]) == [run_id]


def test_the_sdk_replays_into_another_concurrency_key(
    client: Client, celery_worker: object
) -> None:
    original = client.tasks.trigger("test-limited", {"n": 1}, delay="1h", concurrency_key="a")
    kept = client.runs.replay(original.id, delay="1h").id
    moved = client.runs.replay(original.id, delay="1h", concurrency_key=42).id
    assert _replayed_key(kept) == "a"
    assert _replayed_key(moved) == "42"


def _replayed_key(run_id: str) -> str | None:
    """A replay's concurrency key, once the command that creates it has been applied."""
    from tests.support.fixtures import wait_for

    return wait_for(lambda: _key_if_created(run_id), what=f"replay {run_id} created")[0]


def _key_if_created(run_id: str) -> tuple[str | None] | None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runs.models import Run

    with transaction() as session:
        run = session.get(Run, run_id)
        return None if run is None else (run.concurrency_key,)


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


def test_cli_trigger_sends_a_concurrency_key_a_priority_and_named_limits(
    live_server: LiveServer, project: ProjectKeys
) -> None:
    done = _cli(live_server, project, "trigger", "test-limited", "--payload", '{"n": 1}',
                "--delay", "1h", "--concurrency-key", "tenant-9", "--priority", "30",
                "--concurrency", SHARED)
    assert done.returncode == 0, done.stderr
    assert _stored_options(done.stdout.strip()) == ("tenant-9", 30, [OWN, SHARED])
    done = _cli(live_server, project, "trigger", "test-limited", "--delay", "1h",
                "--concurrency", SHARED, "--concurrency", "no-such-limit")
    assert done.returncode == 1
    assert "no-such-limit" in done.stderr
    assert "(HTTP 400)" in done.stderr
    done = _cli(live_server, project, "trigger", "test-limited", "--priority", "soon")
    assert done.returncode == 2


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
