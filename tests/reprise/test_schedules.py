"""``reprise.schedules`` (the Python SDK) and ``reprise schedules list|create|delete`` (the
CLI) against a live API."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from reprise.cli import command_names, main
from reprise.client import Client
from reprise.errors import BadRequestError, NotFoundError
from tests.support.fixtures import ProjectKeys
from tests.support.live_server import LiveServer
from tests.support.schedules import Scheduler, clean_schedules, fire

pytestmark = pytest.mark.e2e

__all__ = ["clean_schedules"]

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(live_server: LiveServer, project: ProjectKeys, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, "--api-url", live_server.base_url, "--key", project.keys["dev"]])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_the_sdk_creates_lists_updates_and_deletes_schedules(
    client: Client, clean_schedules: None
) -> None:
    first = client.schedules.create(task="test-echo", cron="0 9 * * *", timezone="Asia/Tokyo",
                                    external_id="u1", deduplication_key="digest")
    assert first.id.startswith("sched_")
    assert (first.task, first.active, first.timezone, first.external_id) == (
        "test-echo", True, "Asia/Tokyo", "u1"
    )
    assert first.next_run is not None
    assert first.next_run.hour == 0  # 09:00 in Tokyo is midnight UTC
    assert len(first.next_runs) == 5
    again = client.schedules.create(task="test-echo", cron="0 9 * * *", timezone="Asia/Tokyo",
                                    external_id="u1", deduplication_key="digest")
    assert again.id == first.id
    second = client.schedules.create(task="hello-world", cron="*/5 * * * *")
    assert [s.id for s in client.schedules.list(per_page=1)] == [second.id, first.id]
    updated = client.schedules.update(first.id, task="test-echo", cron="0 10 * * *")
    assert (updated.generator.expression, updated.timezone) == ("0 10 * * *", "UTC")
    assert client.schedules.deactivate(first.id).next_run is None
    assert client.schedules.activate(first.id).active
    assert client.schedules.delete(first.id) == first.id
    with pytest.raises(NotFoundError):
        client.schedules.retrieve(first.id)
    with pytest.raises(BadRequestError, match="Invalid cron expression"):
        client.schedules.create(task="test-echo", cron="0 0 0 0 0")
    assert client.schedules.timezones()[0] == "UTC"
    assert "UTC" not in client.schedules.timezones(exclude_utc=True)


def test_cli_schedules_create_list_and_delete(
    cli: Cli, project: ProjectKeys, clean_schedules: None
) -> None:
    assert "schedules" in command_names()
    code, out, err = cli("schedules", "create", "--task", "test-echo", "--cron", "0 * * * *",
                         "--timezone", "Europe/Paris", "--external-id", "acme")
    assert code == 0, err
    schedule_id = out.strip()
    assert schedule_id.startswith("sched_")
    assert "At the start of every hour; next run " in err

    code, out, _ = cli("schedules", "list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "TASK", "CRON", "TIMEZONE", "ACTIVE", "NEXT", "RUN",
                              "(UTC)", "EXTERNAL", "ID"]
    assert row.startswith(schedule_id)
    assert "0 * * * *" in row
    assert row.split()[-1] == "acme"
    code, out, _ = cli("schedules", "list", "--json")
    [listed] = json.loads(out)
    assert listed["id"] == schedule_id

    # A tick's run, found with runs list --schedule.
    scheduler = Scheduler(project)
    scheduler.make_due(schedule_id)
    assert fire() == 1
    [(run_id, _, _)] = scheduler.runs(schedule_id)
    code, out, _ = cli("runs", "list", "--schedule", schedule_id)
    assert [line.split()[0] for line in out.splitlines()[1:]] == [run_id]

    assert cli("schedules", "delete", schedule_id)[:2] == (0, f"{schedule_id}\n")
    code, _, err = cli("schedules", "delete", schedule_id)
    assert (code, err.strip()) == (1, "error: Schedule not found (HTTP 404)")


def test_cli_bad_cron_prints_the_message(cli: Cli, clean_schedules: None) -> None:
    code, _, err = cli("schedules", "create", "--task", "test-echo", "--cron", "0 99 * * *")
    assert code == 1
    assert err.strip() == "error: Invalid cron expression '0 99 * * *': bad hour (HTTP 400)"


def test_unknown_task_is_not_found(client: Client, clean_schedules: None) -> None:
    with pytest.raises(NotFoundError, match="no-such-task"):
        client.schedules.create(task="no-such-task", cron="0 * * * *")


