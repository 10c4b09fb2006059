"""``reprise trigger`` and ``reprise runs …`` run in-process against a live API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reprise.cli import command_names, main
from reprise.client import Client
from tests.reprise.helpers import wait_for_run
from tests.support.fixtures import ProjectKeys, run_row
from tests.support.live_server import LiveServer

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(live_server: LiveServer, project: ProjectKeys, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli("runs", "list")`` → (exit code, stdout, stderr), connected with the dev key."""

    def run(*argv: str, env: str = "dev", connect: bool = True) -> tuple[int, str, str]:
        capsys.readouterr()
        flags = ["--api-url", live_server.base_url, "--key", project.keys[env]] if connect else []
        code = main([*argv, *flags])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_client_commands_are_part_of_the_cli() -> None:
    assert {"trigger", "runs"} <= command_names()


def test_trigger_prints_the_run_id_and_runs_get_shows_it_completed(
    cli: Cli, client: Client, celery_worker: Any
) -> None:
    code, out, _ = cli("trigger", "test-echo", "--payload", '{"hello": "cli"}', "--tag", "t1")
    assert code == 0
    run_id = out.strip()
    assert run_id.startswith("run_")
    wait_for_run(client, run_id, "COMPLETED")

    code, out, _ = cli("runs", "get", run_id, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["id"] == run_id
    assert shown["status"] == "COMPLETED"
    assert shown["output"] == {"payload": {"hello": "cli"}, "attempt": 1, "isReplay": False}
    assert shown["tags"] == ["t1"]
    assert None not in shown.values()
    code, out, _ = cli("runs", "get", run_id)
    assert code == 0
    assert f"id:        {run_id}" in out
    assert "status:    COMPLETED" in out
    assert '"hello": "cli"' in out


def test_trigger_with_an_idempotency_key_reuses_the_run(cli: Cli) -> None:
    args = ("trigger", "test-echo", "--delay", "1h", "--idempotency-key", "k-1", "--ttl", "5m")
    _, first, _ = cli(*args)
    code, second, err = cli(*args)

    assert code == 0
    assert second == first
    assert "existing run" in err
    code, out, _ = cli(*args, "--json")
    shown = json.loads(out)
    assert (shown["id"], shown["isCached"]) == (first.strip(), True)
    assert shown["publicAccessToken"].count(".") == 2


def test_runs_list_prints_a_table_newest_first_and_json_with_filters(cli: Cli) -> None:
    ids = [
        cli("trigger", "test-echo", "--delay", "1h", "--tag", f"n{i}")[1].strip() for i in range(3)
    ]
    cli("runs", "cancel", ids[0])

    code, out, _ = cli("runs", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "TASK", "VERSION", "CREATED", "(UTC)",
                                "REPLAYED", "FROM", "TAGS"]
    assert [line.split()[0] for line in lines[1:]] == ids[::-1]
    assert lines[1].split()[1:3] == ["DELAYED", "test-echo"]
    assert lines[-1].split()[-1] == "n0"

    _, out, _ = cli("runs", "list", "--status", "DELAYED", "--json")
    assert [item["id"] for item in json.loads(out)] == ids[:0:-1]
    _, out, _ = cli("runs", "list", "--status", "CANCELED,FAILED", "--tag", "n0", "--json")
    assert [item["id"] for item in json.loads(out)] == [ids[0]]
    _, out, _ = cli("runs", "list", "--limit", "2", "--json")
    assert len(json.loads(out)) == 2


def test_runs_list_filters_by_date_and_not_replayed_and_shows_what_a_run_replays(
    cli: Cli, client: Client
) -> None:
    """``--not-replayed`` keeps an original whose only replay was canceled, and leaves out
    one whose replay is still under way; the table names the run each replay replays."""
    first, second = (client.tasks.trigger("test-echo", delay="1h").id for _ in range(2))
    replay_of_first = client.runs.replay(first, delay="1h").id
    canceled_replay = client.runs.replay(second, delay="1h").id
    client.runs.cancel(canceled_replay)

    _, out, _ = cli("runs", "list", "--not-replayed", "--json")
    listed = [item["id"] for item in json.loads(out)]
    # The two replays may be created by one batch of commands, in one transaction: the
    # same creation time, so either may be listed first.
    assert sorted(listed[:2]) == sorted([canceled_replay, replay_of_first])
    assert listed[2:] == [second]
    _, out, _ = cli("runs", "list")
    row = next(line for line in out.splitlines() if line.startswith(replay_of_first))
    assert first in row.split()
    _, out, _ = cli("runs", "list", "--since", "1h", "--json")
    assert len(json.loads(out)) == 4
    _, out, _ = cli("runs", "list", "--from", "2999-01-01", "--json")
    assert json.loads(out) == []
    _, out, _ = cli("runs", "list", "--version", "no-such-version", "--json")
    assert json.loads(out) == []
    with pytest.raises(SystemExit) as refused:
        cli("runs", "list", "--from", "yesterday")
    assert refused.value.code == 2


def test_runs_cancel_prints_the_id(cli: Cli, client: Client) -> None:
    run_id = client.tasks.trigger("test-echo", delay="1h").id

    code, out, _ = cli("runs", "cancel", run_id)

    assert (code, out.strip()) == (0, run_id)
    assert client.runs.retrieve(run_id).status == "CANCELED"


def test_runs_cancel_of_a_finished_run_says_there_was_nothing_to_cancel(
    cli: Cli, client: Client
) -> None:
    run_id = client.tasks.trigger("test-echo", delay="1h").id
    client.runs.cancel(run_id)

    code, out, _ = cli("runs", "cancel", run_id)

    assert (code, out.strip()) == (0, f"{run_id} already CANCELED; nothing to cancel")


def test_runs_replay_with_a_payload_and_into_another_environment(
    cli: Cli, client: Client, live_server: LiveServer, project: ProjectKeys
) -> None:
    original = client.tasks.trigger("test-echo", {"n": 1}, delay="1h").id

    code, out, _ = cli("runs", "replay", original, "--payload", '{"n": 2}')
    assert code == 0
    replayed = client.runs.retrieve(out.strip())
    assert (replayed.replayed_from, replayed.payload) == (original, {"n": 2})

    code, out, _ = cli("runs", "replay", original, "--env", "staging")
    assert code == 0
    staging = Client(live_server.base_url, project.keys["staging"])
    assert staging.runs.retrieve(out.strip()).payload == {"n": 1}


def test_runs_replay_overrides_the_originals_options(cli: Cli, client: Client) -> None:
    original = client.tasks.trigger("test-limited", {"n": 1}, delay="1h",
                                    concurrency_key="k1").id

    code, out, _ = cli(
        "runs", "replay", original, "--delay", "1h", "--concurrency-key", "k2",
        "--priority", "30", "--max-attempts", "2", "--queue", "cli-replays", "--ttl", "20m",
    )

    assert code == 0
    client.runs.retrieve(out.strip())  # a read applies the replay command if still pending
    row = run_row(out.strip())
    assert (row.replayed_from, row.concurrency_key, row.priority, row.max_attempts,
            row.queue, row.ttl_seconds) == (original, "k2", 30, 2, "cli-replays", 1200)


def test_runs_reschedule_prints_the_new_time(cli: Cli, client: Client) -> None:
    run_id = client.tasks.trigger("test-echo", delay="1h").id

    code, out, _ = cli("runs", "reschedule", run_id, "--delay", "2030-01-01T00:00:00Z")

    assert code == 0
    assert out.strip() == f"{run_id} delayed until 2030-01-01T00:00:00+00:00"


def test_api_errors_print_the_message_and_status_and_exit_1(
    cli: Cli, live_server: LiveServer
) -> None:
    code, out, err = cli("runs", "get", "run_" + "a" * 24)
    assert (code, out, err) == (1, "", "error: Run not found (HTTP 404)\n")

    wrong_key = ["--api-url", live_server.base_url, "--key", "tr_dev_nope"]
    code, _, err = cli("runs", "list", *wrong_key, connect=False)
    assert (code, err) == (1, "error: Invalid or Missing API key (HTTP 401)\n")

    code, _, err = cli("runs", "reschedule", "not-a-run", "--delay", "1h")
    assert (code, err) == (1, "error: Invalid or missing run ID (HTTP 400)\n")


def test_bad_json_arguments_exit_2(cli: Cli) -> None:
    code, _, err = cli("trigger", "test-echo", "--payload", "{nope")

    assert code == 2
    assert err.startswith("error: --payload is not valid JSON")


def test_connection_from_environment_and_env_file(
    cli: Cli,
    live_server: LiveServer,
    project: ProjectKeys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REPRISE_API_URL", live_server.base_url)
    monkeypatch.setenv("REPRISE_API_KEY", project.keys["dev"])
    code, out, _ = cli("trigger", "test-echo", "--delay", "1h", connect=False)
    assert code == 0
    assert out.startswith("run_")

    monkeypatch.delenv("REPRISE_API_URL")
    monkeypatch.delenv("REPRISE_API_KEY")
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"# connection\nexport TRIGGER_API_URL={live_server.base_url}\n"
        f'TRIGGER_SECRET_KEY="{project.keys["dev"]}"\n'
    )
    code, out, _ = cli("runs", "get", out.strip(), "--env-file", str(env_file), connect=False)
    assert code == 0
    assert "status:    DELAYED" in out
