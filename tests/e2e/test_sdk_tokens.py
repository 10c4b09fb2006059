"""Public access tokens the official SDK signs itself with the secret key
(``auth.createPublicToken``, ``auth.createTriggerPublicToken``): scopes, one-time use,
expiry, forgery — against a live server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fixtures import ProjectKeys

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_sdk_signed_tokens_read_and_trigger_what_their_scopes_name_and_nothing_else(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("tokens.mjs", project.keys["dev"])

    assert scenario.ok("create-run-token").count(".") == 2
    mine = scenario.ok("run-token-reads-its-run")
    assert mine["status"] == "COMPLETED"
    assert scenario.error("run-token-reads-no-other")["status"] == 404
    assert scenario.ok("run-token-subscribes") == ["COMPLETED"]
    # (the server's 404 is asserted in tests/api/test_public_tokens.py; the SDK hides it)
    assert scenario.ok("run-token-cannot-subscribe-to-another") == {"rows": [], "outcome": "no end"}
    assert scenario.error("run-token-cannot-trigger")["status"] == 403
    assert scenario.ok("tag-token-reads-tagged-run") == mine
    assert scenario.error("tag-token-reads-no-untagged-run")["status"] == 404
    assert scenario.ok("trigger-token-triggers")["id"].startswith("run_")
    again = scenario.error("trigger-token-is-one-time-use")
    assert (again["status"], again["error"]) == (401, "This one-time use token has already been used")
    first, second = scenario.ok("multiple-use-trigger-token")
    assert first != second
    assert scenario.error("trigger-token-other-task")["status"] == 403
    assert scenario.ok("batch-trigger-token")["runCount"] == 2
    spent = scenario.error("batch-trigger-token-is-one-time-use")
    assert "This one-time use token has already been used" in spent["message"]
    other_task = scenario.error("batch-trigger-token-other-task")["message"]
    assert "may not batchTrigger task 'test-echo'" in other_task
    assert scenario.ok("with-public-token") == mine
    assert scenario.ok("with-trigger-public-token").startswith("run_")
    assert scenario.ok("with-auth") == mine
    for step in ("expired-token", "forged-token"):
        error = scenario.error(step)
        assert (error["status"], error["error"]) == (401, "Invalid or Missing API key"), step
    tagged, other = scenario.ok("secret-key-reads-everything")
    assert tagged == mine
    assert other["id"] != mine["id"]
