"""A run's events through the official ``@trigger.dev/sdk`` (``node/run_events.mjs``): the
apiClient's ``listRunEvents`` reads the lines the run's task logged on a real worker."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fixtures import ProjectKeys

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_list_run_events_returns_the_logged_lines_to_the_scopes_that_may_read_the_run(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("run_events.mjs", project.keys["dev"])

    handle = scenario.ok("trigger")
    assert scenario.ok("completed") == {"status": "COMPLETED"}
    events = scenario.ok("events")
    assert [(e["level"], e["message"]) for e in events] == [
        ("DEBUG", "debug detail"),
        ("INFO", "starting"),
        ("WARN", "slow query took 1500ms"),
        ("INFO", "printed to stdout"),
        ("INFO", "no newline yet ...now"),
        ("WARN", "to stderr"),
        ("INFO", "from ctx.logger"),
        ("ERROR", "caught it"),
        ("ERROR", "the end"),
    ]
    first = events[1]
    assert first["runId"] == handle["id"]
    assert first["kind"] == "LOG"
    assert first["taskSlug"] == "logs-mixed"
    assert first["attemptNumber"] == 1
    assert first["properties"]["order"] == 42
    assert first["properties"]["logger"] == "logs.app"
    assert first["startTime"].endswith("Z")
    caught = events[7]
    assert caught["isError"]
    assert "ValueError: boom in the task" in caught["properties"]["exception"]["stacktrace"]
    assert scenario.ok("public-token-events") == 9
    assert scenario.error("public-token-other-run")["status"] == 404
