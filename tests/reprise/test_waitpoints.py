"""``reprise.waitpoints`` (the Python SDK) and ``reprise tokens …`` (the CLI, as a
subprocess) against a live API: create (idempotency key, timeout, tags), list with filters
across pages, retrieve with the output decoded, complete once, and the callback URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from reprise.client import Client
from reprise.errors import AuthenticationError, BadRequestError, NotFoundError
from reprise.models import WaitpointToken, WaitpointTokenDetail, WaitpointTokenItem
from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e


def test_create_retrieve_and_complete_with_the_sdk(client: Client) -> None:
    token = client.waitpoints.create_token(
        idempotency_key="approve-42", idempotency_key_ttl="1h", timeout=timedelta(hours=1),
        tags=["order:42", "team:ops"],
    )
    assert isinstance(token, WaitpointToken)
    assert token.id.startswith("waitpoint_")
    assert token.is_cached is False
    assert token.url.startswith(client.base_url)
    assert token.public_access_token
    assert token.public_access_token.count(".") == 2
    again = client.waitpoints.create_token(idempotency_key="approve-42")
    assert (again.id, again.is_cached) == (token.id, True)

    waiting = client.waitpoints.retrieve_token(token.id)
    assert isinstance(waiting, WaitpointTokenDetail)
    assert (waiting.status, waiting.output, waiting.output_is_error) == ("WAITING", None, False)
    assert waiting.tags == ["order:42", "team:ops"]
    assert waiting.idempotency_key == "approve-42"
    assert waiting.timeout_at is not None
    assert timedelta(minutes=59) < waiting.timeout_at - datetime.now(UTC) < timedelta(minutes=61)

    assert client.waitpoints.complete_token(token, {"approved": True, "by": "ann"}) is True
    assert client.waitpoints.complete_token(token.id, {"approved": False}) is True
    done = client.waitpoints.retrieve_token(token)
    assert (done.status, done.output) == ("COMPLETED", {"approved": True, "by": "ann"})
    assert done.completed_at is not None


def test_the_callback_url_and_a_public_token_complete_it(
    client: Client, live_server: LiveServer
) -> None:
    by_url = client.waitpoints.create_token()
    answer = httpx.post(by_url.url, json={"status": "paid"})
    assert (answer.status_code, answer.json()) == (200, {"success": True})
    assert client.waitpoints.retrieve_token(by_url.id).output == {"status": "paid"}

    by_jwt = client.waitpoints.create_token()
    assert by_jwt.public_access_token is not None
    with Client(live_server.base_url, by_jwt.public_access_token, retry_backoff=0.01) as scoped:
        assert scoped.waitpoints.complete_token(by_jwt.id, [1, 2]) is True
        with pytest.raises(AuthenticationError):
            scoped.waitpoints.retrieve_token(by_jwt.id)
    assert client.waitpoints.retrieve_token(by_jwt.id).output == [1, 2]


def test_list_filters_and_iterates_pages(client: Client) -> None:
    made = [client.waitpoints.create_token(tags=["batch", f"n:{i}"]).id for i in range(5)]
    other = client.waitpoints.create_token(tags="elsewhere").id
    client.waitpoints.complete_token(made[0], "ok")
    newest_first = list(reversed(made))

    listed = list(client.waitpoints.list_tokens(tags="batch", page_size=2))
    assert all(isinstance(item, WaitpointTokenItem) for item in listed)
    assert [item.id for item in listed] == newest_first
    assert [t.id for t in client.waitpoints.list_tokens(tags=["batch"], limit=3)] == (
        newest_first[:3])
    waiting = [t.id for t in client.waitpoints.list_tokens(status="WAITING", page_size=1)]
    assert waiting == [other, *newest_first[:4]]
    assert [t.id for t in client.waitpoints.list_tokens(status=["COMPLETED", "TIMED_OUT"])] == [
        made[0]]
    assert [t.id for t in client.waitpoints.list_tokens(tags=["n:1", "elsewhere"])] == [
        other, made[1]]
    now = datetime.now(UTC)
    assert len(list(client.waitpoints.list_tokens(period="1h"))) == 6
    assert list(client.waitpoints.list_tokens(from_=now + timedelta(hours=1))) == []
    assert len(list(client.waitpoints.list_tokens(to=now + timedelta(hours=1)))) == 6


def test_sdk_errors(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.waitpoints.retrieve_token("waitpoint_nope")
    with pytest.raises(NotFoundError):
        client.waitpoints.complete_token("waitpoint_nope", 1)
    with pytest.raises(BadRequestError, match="filter\\[status\\]"):
        list(client.waitpoints.list_tokens(status="DONE"))
    with pytest.raises(BadRequestError, match="timeout"):
        client.waitpoints.create_token(timeout="whenever")
    with pytest.raises(ValueError, match="token id"):
        client.waitpoints.retrieve_token("")


# --- the CLI, as a subprocess ----------------------------------------------------------


def _cli(server: LiveServer, project: ProjectKeys, *argv: str,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REPRISE_API_URL": server.base_url,
           "REPRISE_API_KEY": project.keys["dev"]}
    return subprocess.run([sys.executable, "-m", "reprise.cli", *argv], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_tokens_create_list_get_and_complete(
    live_server: LiveServer, project: ProjectKeys, tmp_path: Path
) -> None:
    done = _cli(live_server, project, "tokens", "create", "--tag", "cli", "--tag", "x",
                "--timeout", "1h", "--idempotency-key", "cli-1")
    assert done.returncode == 0, done.stderr
    token_id = done.stdout.strip()
    assert token_id.startswith("waitpoint_")
    assert f"callback URL: {live_server.base_url}/api/v1/waitpoints/tokens/{token_id}/callback/" in (
        done.stderr)
    again = _cli(live_server, project, "tokens", "create", "--idempotency-key", "cli-1", "--json")
    created = json.loads(again.stdout)
    assert (created["id"], created["isCached"]) == (token_id, True)
    assert "publicAccessToken" in created

    listed = _cli(live_server, project, "tokens", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "CREATED"]
    assert row.split()[:2] == [token_id, "WAITING"]
    assert row.split()[-2:] == ["cli-1", "cli,x"]

    shown = _cli(live_server, project, "tokens", "get", token_id)
    assert "status:      WAITING" in shown.stdout
    assert "timeout:" in shown.stdout

    done = _cli(live_server, project, "tokens", "complete", token_id,
                "--data", '{"approved": true}')
    assert (done.returncode, done.stdout) == (0, f"token {token_id} completed\n")
    shown = _cli(live_server, project, "tokens", "get", token_id)
    assert 'output:      {"approved": true}' in shown.stdout
    as_json = json.loads(_cli(live_server, project, "tokens", "get", token_id, "--json").stdout)
    assert (as_json["status"], as_json["output"]) == ("COMPLETED", {"approved": True})

    data_file = tmp_path / "data.json"
    data_file.write_text('{"from": "file"}')
    second = _cli(live_server, project, "tokens", "create").stdout.strip()
    assert _cli(live_server, project, "tokens", "complete", second, "--data-file",
                str(data_file)).returncode == 0
    third = _cli(live_server, project, "tokens", "create").stdout.strip()
    assert _cli(live_server, project, "tokens", "complete", third, "--data-file", "-",
                stdin="[1]").returncode == 0
    completed = json.loads(_cli(live_server, project, "tokens", "list", "--status", "COMPLETED",
                                "--json").stdout)
    assert {item["id"] for item in completed} == {token_id, second, third}
    outputs = {item: json.loads(_cli(live_server, project, "tokens", "get", item,
                                     "--json").stdout)["output"] for item in (second, third)}
    assert outputs == {second: {"from": "file"}, third: [1]}
    tagged = json.loads(_cli(live_server, project, "tokens", "list", "--tag", "cli",
                             "--json").stdout)
    assert [item["id"] for item in tagged] == [token_id]


def test_cli_tokens_errors(live_server: LiveServer, project: ProjectKeys) -> None:
    done = _cli(live_server, project, "tokens", "complete", "waitpoint_nope", "--data", "1")
    assert done.returncode == 1
    assert "Waitpoint not found" in done.stderr
    done = _cli(live_server, project, "tokens", "complete", "waitpoint_x", "--data", "{nope")
    assert done.returncode == 2
    assert "--data is not valid JSON" in done.stderr
    done = _cli(live_server, project, "tokens", "complete", "waitpoint_x", "--data", "1",
                "--data-file", "f")
    assert (done.returncode, done.stderr) == (2, "error: pass --data or --data-file, not both\n")
    done = _cli(live_server, project, "tokens", "list", "--status", "NOPE")
    assert done.returncode == 1
    assert "Invalid status values: NOPE" in done.stderr
