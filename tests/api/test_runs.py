"""Retrieve, list and cancel; environment isolation; the run object's wire shape."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row

SDK = {"x-trigger-api-version": "2025-07-16"}


def test_retrieve_has_the_documented_shape_and_never_null(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(
        api, project, delay="1h", ttl="10m", tags=["b", "a"], metadata={"k": "v"}
    )
    body = api.get(f"/api/v3/runs/{run_id}", headers=project.headers(**SDK)).json()
    assert body["id"] == run_id
    assert run_id.startswith("run_")
    assert len(run_id) >= 24
    assert body["status"] == "DELAYED"
    assert body["taskIdentifier"] == "test-echo"
    assert body["tags"] == ["a", "b"]
    assert body["ttl"] == "10m"
    assert body["delayedUntil"].endswith("Z")
    assert len(body["delayedUntil"]) == 24
    assert body["metadata"] == {"k": "v"}
    assert body["payload"] == {"n": 1}
    assert body["relatedRuns"] == {}
    assert body["attempts"] == []
    assert body["isQueued"] is True
    assert body["isCompleted"] is False
    assert "output" not in body
    assert "error" not in body
    assert "startedAt" not in body

    def no_nulls(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                assert item is not None
                no_nulls(item)
        elif isinstance(value, list):
            for item in value:
                no_nulls(item)

    no_nulls(body)


@pytest.mark.parametrize(
    ("run_id", "status", "message"),
    [
        ("nope", 400, "Invalid or missing run ID"),
        ("run_doesnotexist000000000", 404, "Run not found"),
    ],
)
def test_retrieve_errors(api: Any, project: ProjectKeys, run_id: str, status: int, message: str) -> None:
    response = api.get(f"/api/v3/runs/{run_id}", headers=project.headers())
    assert response.status_code == status
    assert response.json() == {"error": message}


def test_a_run_of_another_environment_is_404_never_403(api: Any, project: ProjectKeys) -> None:
    # Delayed, so that a worker left running by another test cannot move it on.
    run_id = triggers.via_api(api, project, env="prod", delay="1h")
    for path, method in [
        (f"/api/v3/runs/{run_id}", "get"),
        (f"/api/v2/runs/{run_id}/cancel", "post"),
    ]:
        response = getattr(api, method)(path, headers=project.headers("dev"))
        assert response.status_code == 404
        assert response.json() == {"error": "Run not found"}
    assert run_row(run_id).status == "DELAYED"
    listed = api.get("/api/v1/runs", headers=project.headers("dev")).json()
    assert listed["data"] == []


def test_list_is_newest_first_with_cursor_pagination(api: Any, project: ProjectKeys) -> None:
    ids = [triggers.via_api(api, project) for _ in range(5)]
    seen: list[str] = []
    params: dict[str, Any] = {"page[size]": 2}
    while True:
        page = api.get("/api/v1/runs", params=params, headers=project.headers()).json()
        seen += [item["id"] for item in page["data"]]
        for item in page["data"]:
            assert item["env"]["name"] == "dev"
        if "next" not in page["pagination"]:
            break
        params["page[after]"] = page["pagination"]["next"]
    assert seen == list(reversed(ids))
    back = api.get(
        "/api/v1/runs", params={"page[size]": 2, "page[before]": ids[2]}, headers=project.headers()
    ).json()
    assert [item["id"] for item in back["data"]] == [ids[4], ids[3]]


def test_list_filters(api: Any, project: ProjectKeys) -> None:
    # Delayed runs stay put even if a worker started by another test is still running.
    tagged = triggers.via_api(api, project, tags=["vip"], delay="2h")
    triggers.via_api(api, project, task="hello-world", delay="2h")
    delayed = triggers.via_api(api, project, delay="1h", tags=["other"])

    def ids(**params: Any) -> list[str]:
        body = api.get("/api/v1/runs", params=params, headers=project.headers()).json()
        return [item["id"] for item in body["data"]]

    assert ids(**{"filter[tag]": "vip"}) == [tagged]
    assert ids(**{"filter[status]": "DELAYED", "filter[tag]": "other"}) == [delayed]
    assert ids(**{"filter[status]": "COMPLETED"}) == []
    assert set(ids(**{"filter[taskIdentifier]": "test-echo"})) == {tagged, delayed}
    assert len(ids(**{"filter[status]": "QUEUED,DELAYED"})) == 3
    assert len(ids(**{"filter[status]": "WAITING_FOR_DEPLOY,DELAYED"})) == 3
    assert len(ids(**{"filter[createdAt][period]": "1h"})) == 3
    assert ids(**{"filter[createdAt][from]": "2999-01-01T00:00:00Z"}) == []
    bad = api.get("/api/v1/runs", params={"filter[status]": "BOGUS"}, headers=project.headers())
    assert bad.status_code == 400
    assert "BOGUS" in bad.json()["error"]
    too_big = api.get("/api/v1/runs", params={"page[size]": 1000}, headers=project.headers())
    assert too_big.status_code == 400


def test_cancel_of_queued_and_delayed_runs_is_immediate(api: Any, project: ProjectKeys) -> None:
    # test-block never finishes on its own, so the run is QUEUED or EXECUTING, never done.
    queued = triggers.via_api(api, project, task="test-block")
    delayed = triggers.via_api(api, project, delay="1h")
    token_before = run_row(delayed).schedule_token
    for run_id in (queued, delayed):
        response = api.post(f"/api/v2/runs/{run_id}/cancel", headers=project.headers())
        assert response.status_code == 200
        assert response.json() == {"id": run_id}
        assert run_row(run_id).status == "CANCELED"
    # The delayed run's timer token moved on, so any timer in flight is a no-op.
    assert run_row(delayed).schedule_token > token_before
    # Cancel of a finished run answers 200 and changes nothing.
    again = api.post(f"/api/v2/runs/{queued}/cancel", headers=project.headers())
    assert again.status_code == 200
    assert run_row(queued).status == "CANCELED"


def test_openapi_is_served(api: Any) -> None:
    spec = api.get("/openapi.json").json()
    assert "/api/v1/tasks/{task_id}/trigger" in spec["paths"]
    assert "/api/v3/runs/{run_id}" in spec["paths"]


def test_unknown_route_uses_the_error_shape(api: Any) -> None:
    response = api.get("/api/v9/nothing")
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
