"""The server commands of the ``reprise`` CLI (``workers.cli``) as the CLI runs them."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tomllib

import pytest

from reprise.cli import command_names, main
from reprise_server.workers import cli as server_cli
from tests.support.live_server import ROOT

SERVER_COMMANDS = {
    "dev", "migrate", "api", "worker", "control", "beat", "flower", "healthcheck", "keys",
}


def test_the_cli_has_every_server_command() -> None:
    assert command_names() >= SERVER_COMMANDS


def test_keys_create_list_and_revoke(capsys: pytest.CaptureFixture[str]) -> None:
    slug = f"cli-{secrets.token_hex(3)}"
    assert main(["keys", "create", "--env", "staging", "--project", slug]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("tr_stg_")
    shown = secret[: len("tr_stg_") + 6]

    assert main(["keys", "list"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if f" {slug} " in line]
    _, project, ref, *rest = line.split()
    assert [project, *rest] == [slug, "staging", f"{shown}…", "active"]
    assert re.fullmatch(r"proj_[0-9a-z]{20}", ref)

    assert main(["keys", "revoke", shown]) == 0
    assert capsys.readouterr().out.strip() == "revoked 1 key(s)"
    assert main(["keys", "list"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if f" {slug} " in line]
    assert line.endswith("revoked")

    assert main(["keys", "revoke", shown]) == 1  # nothing active left to revoke
    assert capsys.readouterr().err.strip() == f"no active key {shown!r}"


@pytest.mark.parametrize("argv", [["dev"], ["migrate"], ["healthcheck", "worker"]])
def test_a_server_command_without_the_server_installed_says_how_to_install_it(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(server_cli, "SERVER_MODULES", ("celery", "reprise_absent_dependency"))
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"reprise {argv[0]} needs the server: pip install ./server (from a clone of Reprise, beside the SDK) "
        "(not installed: reprise_absent_dependency)"
    )
    assert captured.out == ""



def test_the_checked_modules_are_the_server_dependencies() -> None:
    project = tomllib.loads((ROOT / "server" / "pyproject.toml").read_text())["project"]
    server_extra = [d for d in project["dependencies"] if not d.startswith("reprise-sdk")]
    distributions = {re.split(r"[\[<>=~!; ]", req, maxsplit=1)[0] for req in server_extra}
    import_names = {"pyjwt": "jwt"}
    expected = {import_names.get(d, d.replace("-", "_")) for d in distributions}
    assert set(server_cli.SERVER_MODULES) == expected
    assert server_cli.missing_server_modules() == []  # the tests run with the server installed


def test_without_any_of_the_server_the_message_is_one_short_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(server_cli, "SERVER_MODULES", ("reprise_absent_a", "reprise_absent_b"))
    assert main(["worker"]) == 2
    expected = "reprise worker needs the server: pip install ./server (from a clone of Reprise, beside the SDK)"
    assert capsys.readouterr().err.strip() == expected


@pytest.mark.parametrize("command", [["api"], ["worker"], ["control"], ["beat"], ["flower"]])
def test_a_process_without_its_stores_exits_at_once_naming_them(command: list[str]) -> None:
    """Never Celery's default broker (amqp://localhost) or a database that happens to run
    on this machine: one line naming what is missing, exit code 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRISE_")}
    env["REPRISE_REDIS_URL"] = os.environ["REPRISE_REDIS_URL"]
    done = subprocess.run(
        [sys.executable, "-m", "reprise.cli", *command], env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"reprise {command[0]}: REPRISE_DATABASE_URL must be set "
        "(or use `reprise dev`, which starts embedded servers)"
    )
    env.pop("REPRISE_REDIS_URL")
    done = subprocess.run(
        [sys.executable, "-m", "reprise.cli", *command], env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert "REPRISE_DATABASE_URL and REPRISE_REDIS_URL must be set" in done.stderr
