"""Waitpoint tokens through the official SDK (``wait.createToken``, ``listTokens``,
``retrieveToken``, ``completeToken``) and a POST to a token's callback URL with fetch,
against a live server (node/waitpoints.mjs); the session's worker fires the timeout timers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fixtures import ProjectKeys

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_waitpoint_tokens_through_the_official_sdk(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    scenario = run_scenario("waitpoints.mjs", project.keys["dev"])

    created = scenario.ok("create")
    assert created["id"].startswith("waitpoint_")
    assert created["isCached"] is False
    assert "/api/v1/waitpoints/tokens/" + created["id"] + "/callback/" in created["url"]
    assert created["publicAccessToken"].count(".") == 2
    again = scenario.ok("create-again")
    assert (again["id"], again["isCached"], again["url"]) == (
        created["id"], True, created["url"])
    plain = scenario.ok("create-plain")
    by_url = scenario.ok("create-for-url")

    waiting = scenario.ok("retrieve-waiting")
    assert waiting["status"] == "WAITING"
    assert sorted(waiting["tags"]) == waiting["tags"]
    assert "team:ops" in waiting["tags"]
    assert waiting["dates"] == {"createdAt": "date", "timeoutAt": "date", "completedAt": "absent",
                                "idempotencyKeyExpiresAt": "date"}
    assert "output" not in waiting
    assert waiting["url"] == created["url"]

    listed = scenario.ok("list-by-tag")
    assert listed["ids"] == [by_url["id"], plain["id"], created["id"]]
    assert listed["firstPage"] == [by_url["id"]]
    assert listed["hasNext"] is True
    assert listed["createdAtIsDate"] is True

    assert scenario.ok("complete") == {"success": True}
    assert scenario.ok("complete-again") == {"success": True}
    done = scenario.ok("retrieve-completed")
    assert done["status"] == "COMPLETED"
    assert done["output"] == {"approved": True, "by": "ann"}
    assert done["completedAt"] == "date"

    assert scenario.ok("callback-url") == {"status": 200, "body": {"success": True}}
    assert scenario.ok("callback-url-wrong-hash") == {
        "status": 401, "body": {"error": "Invalid URL, hash doesn't match"}}
    assert scenario.ok("retrieve-after-callback") == {"status": "paid"}

    by_status = scenario.ok("list-by-status")
    assert by_status["completed"] == [by_url["id"], created["id"]]
    assert by_status["waiting"] == [plain["id"]]
    assert by_status["recent"] == [by_url["id"], plain["id"], created["id"]]

    assert scenario.ok("public-token-completes") == {"success": True}
    assert scenario.error("public-token-other-token")["status"] == 403
    timed_out = scenario.ok("timed-out")
    assert (timed_out["status"], timed_out["output"], timed_out["errorName"]) == (
        "TIMED_OUT", "absent", "WaitpointTimeoutError")
    assert timed_out["errorMessage"].startswith("Waitpoint timed out at 20")
    assert scenario.error("retrieve-unknown")["status"] == 404
    bad = scenario.error("list-bad-status")
    assert bad["status"] == 400
    assert "Invalid status values: DONE" in bad["message"]
