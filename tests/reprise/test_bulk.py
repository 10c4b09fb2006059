"""``runs.bulk.*`` of the SDK and ``reprise runs bulk …`` (run as a subprocess) against a
live API and the session's worker."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reprise.bulk import BulkPollTimeoutError, bulk_filter
from reprise.client import Client
from reprise.errors import ApiError, BadRequestError, NotFoundError
from reprise.models import BulkAction, BulkActionHandle, BulkActionPreview
from tests.reprise.test_poll import reprise_cli
from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e


def _tag() -> str:
    return f"bulk-{uuid.uuid4().hex[:10]}"


def _failed(client: Client, tag: str, n: int) -> list[str]:
    ids = [client.tasks.trigger("test-fail-until", {"i": i}, tags=[tag], max_attempts=1).id
           for i in range(n)]
    for run_id in ids:
        assert client.runs.poll(run_id, timeout=60, interval=0.1).status == "FAILED"
    return ids


def test_the_filter_is_sent_as_the_api_takes_it() -> None:
    since = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert bulk_filter(status=["FAILED", "CRASHED"], task="t", tags="a", version="v1",
                       queue="task/t", created_from=since) == {
        "status": ["FAILED", "CRASHED"], "taskIdentifier": "t", "tag": "a", "version": "v1",
        "queue": "task/t", "from": "2026-01-02T03:04:05.000Z",
    }
    assert bulk_filter(period=timedelta(hours=2)) == {"period": "7200s"}
    assert bulk_filter() == {}


def test_bulk_replay_dry_run_then_replay_by_filter_poll_retrieve_and_list(
    client: Client, celery_worker: Any
) -> None:
    tag = _tag()
    failed = _failed(client, tag, 3)

    preview = client.runs.bulk.replay(status="FAILED", task="test-fail-until", tags=tag,
                                      period="1d", dry_run=True)
    assert isinstance(preview, BulkActionPreview)
    assert (preview.count, sorted(preview.run_ids)) == (3, sorted(failed))

    same = client.runs.bulk.replay(status="FAILED", tags=tag, period=timedelta(hours=1),
                                   created_to=datetime.now(UTC) + timedelta(minutes=1),
                                   dry_run=True)
    assert isinstance(same, BulkActionPreview)
    assert same.count == 3

    created = client.runs.bulk.replay(status="FAILED", tags=[tag], name="after the fix")
    assert isinstance(created, BulkActionHandle)
    seen: list[BulkAction] = []
    done = client.runs.bulk.poll(created.id, timeout=60, interval=0.1, on_progress=seen.append)

    assert isinstance(done, BulkAction)
    assert (done.id, done.status, done.type, done.name) == (
        created.id, "COMPLETED", "REPLAY", "after the fix")
    assert (done.counts.total, done.counts.success, done.counts.failure) == (3, 3, 0)
    assert done.is_final
    assert done.completed_at is not None
    assert seen[-1].status == "COMPLETED"
    assert client.runs.bulk.retrieve(created.id).counts == done.counts
    replays = [run for run in client.runs.list(tag=tag) if run.replayed_from]
    assert sorted(run.replayed_from or "" for run in replays) == sorted(failed)
    made = list(client.runs.list(bulk_action=created.id))
    assert sorted(run.id for run in made) == sorted(run.id for run in replays)
    listed = list(client.runs.bulk.list(limit=5))
    assert created.id in [action.id for action in listed]
    assert listed == sorted(listed, key=lambda a: a.created_at, reverse=True)


def test_bulk_cancel_and_reschedule_by_ids(client: Client, celery_worker: Any) -> None:
    delayed = [client.tasks.trigger("test-echo", {"i": i}, delay="1h").id for i in range(3)]

    moved = client.runs.bulk.reschedule("3h", run_ids=delayed[:2])
    assert isinstance(moved, BulkActionHandle)
    done = client.runs.bulk.poll(moved.id, timeout=60, interval=0.1)
    assert (done.type, done.status, done.counts.success) == ("RESCHEDULE", "COMPLETED", 2)
    until = client.runs.retrieve(delayed[0]).delayed_until
    assert until is not None
    assert until > datetime.now(UTC) + timedelta(hours=2)

    created = client.runs.bulk.cancel(run_ids=delayed)
    assert isinstance(created, BulkActionHandle)
    done = client.runs.bulk.poll(created.id, timeout=60, interval=0.1)
    assert (done.type, done.status, done.counts.success) == ("CANCEL", "COMPLETED", 3)
    assert {client.runs.retrieve(run_id).status for run_id in delayed} == {"CANCELED"}


def test_abort_a_paced_replay_and_poll_timeout(client: Client, celery_worker: Any) -> None:
    failed = _failed(client, _tag(), 3)
    created = client.runs.bulk.replay(run_ids=failed, max_per_second=0.1)
    assert isinstance(created, BulkActionHandle)

    with pytest.raises(BulkPollTimeoutError) as caught:
        client.runs.bulk.poll(created.id, timeout=0.3, interval=0.1)
    assert isinstance(caught.value, TimeoutError)
    assert f"bulk action {created.id} was not done after 0.3s" in str(caught.value)

    assert client.runs.bulk.abort(created.id) == BulkActionHandle(id=created.id)
    assert client.runs.bulk.poll(created.id, timeout=30, interval=0.1).status == "ABORTED"
    with pytest.raises(ApiError) as again:
        client.runs.bulk.abort(created.id)
    assert again.value.status == 409


def test_bad_selections_are_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="run_ids or by filters"):
        client.runs.bulk.cancel()
    with pytest.raises(ValueError, match="run_ids or by filters"):
        client.runs.bulk.cancel(run_ids=["run_" + "a" * 24], status="FAILED")
    with pytest.raises(BadRequestError, match="unknown status"):
        client.runs.bulk.cancel(status="NOPE")
    with pytest.raises(BadRequestError, match="maxPerSecond"):
        client.runs.bulk.replay(status="FAILED", max_per_second=0.01)
    with pytest.raises(NotFoundError):
        client.runs.bulk.retrieve("bulk_" + "a" * 24)


def test_cli_runs_bulk_cancel_and_replay_show_progress_until_done(
    client: Client, celery_worker: Any, live_server: LiveServer, project: ProjectKeys
) -> None:
    key = project.keys["dev"]
    tag = _tag()
    delayed = [client.tasks.trigger("test-echo", {"i": i}, delay="1h", tags=[tag]).id
               for i in range(2)]

    result = reprise_cli(live_server, key, "runs", "bulk", "cancel", "--tag", tag, "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dry run: would cancel 2 runs"
    assert sorted(line.strip() for line in lines[1:]) == sorted(delayed)
    assert {client.runs.retrieve(run_id).status for run_id in delayed} == {"DELAYED"}

    result = reprise_cli(live_server, key, "runs", "bulk", "cancel", "--tag", tag,
                         "--status", "DELAYED", "--since", "1d", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bulk cancel bulk_")
    assert lines[0].endswith(" accepted")
    bulk_id = lines[0].split()[2]
    assert "\r" not in result.stdout  # not a terminal: plain lines
    assert lines[-1] == f"{bulk_id} COMPLETED: 2/2 runs (2 succeeded, 0 failed)"
    assert {client.runs.retrieve(run_id).status for run_id in delayed} == {"CANCELED"}

    failed_tag = _tag()
    failed = _failed(client, failed_tag, 2)
    result = reprise_cli(live_server, key, "runs", "bulk", "replay", "--status", "FAILED",
                         "--task", "test-fail-until", "--tag", failed_tag, "--since", "1d",
                         "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("COMPLETED: 2/2 runs (2 succeeded, 0 failed)")
    replays = [run for run in client.runs.list(tag=failed_tag) if run.replayed_from]
    assert sorted(run.replayed_from or "" for run in replays) == sorted(failed)

    later = [client.tasks.trigger("test-echo", delay="1h").id for _ in range(2)]
    result = reprise_cli(live_server, key, "runs", "bulk", "reschedule", "--run-id", later[0],
                         "--run-id", later[1], "--delay", "3h", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("COMPLETED: 2/2 runs (2 succeeded, 0 failed)")
    until = client.runs.retrieve(later[1]).delayed_until
    assert until is not None
    assert until > datetime.now(UTC) + timedelta(hours=2)

    result = reprise_cli(live_server, key, "runs", "bulk", "cancel")
    assert result.returncode == 2
    assert "select runs" in result.stderr


def test_cli_runs_bulk_rewrites_one_progress_line_on_a_terminal(
    client: Client, celery_worker: Any, live_server: LiveServer, project: ProjectKeys
) -> None:
    tag = _tag()
    delayed = [client.tasks.trigger("test-echo", delay="1h", tags=[tag]).id for _ in range(2)]
    leader, follower = pty.openpty()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRISE_", "TRIGGER_"))}
        child = subprocess.Popen(
            [sys.executable, "-m", "reprise.cli", "runs", "bulk", "cancel", "--tag", tag,
             "--interval", "0.1", "--api-url", live_server.base_url,
             "--key", project.keys["dev"]],
            stdout=follower, stderr=subprocess.PIPE, env=env,
        )
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert child.wait(timeout=60) == 0
    finally:
        os.close(leader)
    text = output.decode()
    assert "\r\x1b[K" in text
    assert text.endswith("COMPLETED: 2/2 runs (2 succeeded, 0 failed)\r\n")
    assert {client.runs.retrieve(run_id).status for run_id in delayed} == {"CANCELED"}


def test_cli_runs_bulk_get_and_abort(
    client: Client, celery_worker: Any, live_server: LiveServer, project: ProjectKeys
) -> None:
    key = project.keys["dev"]
    failed = _failed(client, _tag(), 3)
    created = client.runs.bulk.replay(run_ids=failed, max_per_second=0.1)
    assert isinstance(created, BulkActionHandle)

    result = reprise_cli(live_server, key, "runs", "bulk", "get", created.id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"replay {created.id} PENDING: ")
    result = reprise_cli(live_server, key, "runs", "bulk", "get", created.id, "--json")
    shown = json.loads(result.stdout)
    assert (shown["id"], shown["type"], shown["maxPerSecond"]) == (created.id, "REPLAY", 0.1)

    result = reprise_cli(live_server, key, "runs", "bulk", "abort", created.id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{created.id} ABORTED: ")
    result = reprise_cli(live_server, key, "runs", "bulk", "abort", created.id)
    assert result.returncode == 1
    assert "(HTTP 409)" in result.stderr
