"""``/api/v1/concurrency-limits`` and ``/api/v1/queues`` in the official SDK's shapes: list
in pages, retrieve (a limit, one key's view of it, a queue by id, task or name), override,
reset, pause and resume; names holding a ``/`` arrive encoded; bad input is a 400 naming
the field and writes nothing; an unknown limit or queue is a 404. ``filter[queue]`` lists
runs by queue, on the run list and in a bulk action's filter.

The test version declares the limits ``task/test-limited`` (total 2, 1 per key) and
``test-shared`` (total 3), and the custom queue ``emails`` (tests/support/tasks.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text

from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for_status

OWN = "task/test-limited"
SHARED = "test-shared"
LIMITS = "/api/v1/concurrency-limits"
QUEUES = "/api/v1/queues"


def _limit(name: str, suffix: str = "") -> str:
    """The path as the SDK builds it (``encodeURIComponent(name)``)."""
    return f"{LIMITS}/{quote(name, safe='')}{suffix}"


def _queue(name: str, suffix: str = "") -> str:
    """The path as the SDK builds it (``/`` encoded twice)."""
    return f"{QUEUES}/{quote(name.replace('/', '%2F'), safe='')}{suffix}"


def _flow_state(project: ProjectKeys) -> list[Any]:
    """Every flow-control row of the project's dev environment, to show nothing changed."""
    from reprise_server.shared.db import transaction

    env = project.environment_ids["dev"]
    with transaction() as session:
        rows: list[Any] = []
        for query in (
            "SELECT * FROM concurrency_limits WHERE environment_id = :env ORDER BY name",
            ("SELECT k.* FROM concurrency_keys k JOIN concurrency_limits l ON l.id = k.limit_id "
            "WHERE l.environment_id = :env ORDER BY k.limit_id, k.key"),
            "SELECT * FROM queues WHERE environment_id = :env ORDER BY name",
        ):
            rows += [tuple(row) for row in session.execute(text(query), {"env": env})]
        return rows


def _mine(items: list[dict[str, Any]], names: set[str]) -> list[str]:
    return [item["name"] for item in items if item["name"] in names]


# --- concurrency limits ----------------------------------------------------------------


def test_list_pages_the_declared_limits_by_name(api: Any, project: ProjectKeys) -> None:
    response = api.get(LIMITS, headers=project.headers())
    assert response.status_code == 200, response.text
    body = response.json()
    assert _mine(body["data"], {OWN, SHARED}) == [OWN, SHARED]
    count = body["pagination"]["count"]
    assert body["pagination"] == {"currentPage": 1, "totalPages": 1, "count": count}
    assert count == len(body["data"]) >= 2

    first = api.get(LIMITS, params={"perPage": "1"}, headers=project.headers()).json()
    second = api.get(LIMITS, params={"perPage": "1", "page": "2"}, headers=project.headers()).json()
    assert first["pagination"] == {"currentPage": 1, "totalPages": count, "count": count}
    assert second["pagination"]["currentPage"] == 2
    assert [first["data"][0]["name"], second["data"][0]["name"]] == [
        item["name"] for item in body["data"][:2]
    ]


def test_retrieve_shows_the_limit_and_a_key_view(api: Any, project: ProjectKeys) -> None:
    response = api.get(_limit(OWN), headers=project.headers())
    assert response.status_code == 200, response.text
    item = response.json()
    assert item["id"].startswith("climit_")
    assert item == {
        "id": item["id"], "name": OWN,
        "perKey": {"current": 1, "base": 1, "override": None, "overriddenAt": None},
        "total": {"current": 2, "base": 2, "override": None, "overriddenAt": None},
        "running": 0, "queued": 0, "paused": False,
    }
    # Unencoded, the name reaches the same limit.
    assert api.get(f"{LIMITS}/{OWN}", headers=project.headers()).json() == item
    shared = api.get(_limit(SHARED), headers=project.headers()).json()
    assert (shared["total"]["current"], shared["perKey"]["current"]) == (3, None)

    key = api.get(_limit(OWN), params={"concurrencyKey": "user-1"}, headers=project.headers())
    assert key.status_code == 200, key.text
    assert key.json() == {
        "name": OWN, "concurrencyKey": "user-1",
        "perKey": {"current": 1, "base": 1, "override": None, "expiresAt": None},
        "running": 0, "paused": False,
    }


def test_running_and_queued_count_the_runs_holding_the_limit(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    """Two runs execute (one per key, two in all) and hold until released; the other two
    wait in the limit's line, then run as slots free."""
    from tests.support.tasks import gate

    hold = {"hold": f"limited-{project.slug}"}
    ids = [triggers.via_api(api, project, task="test-limited", payload=hold, concurrencyKey=key)
           for key in ("a", "a", "a", "b")]

    def counts() -> tuple[int, int]:
        item = api.get(_limit(OWN), headers=project.headers()).json()
        return item["running"], item["queued"]

    assert counts() == (2, 2)
    key = api.get(_limit(OWN), params={"concurrencyKey": "a"}, headers=project.headers()).json()
    assert key["running"] == 1
    queue = api.get(_queue("test-limited"), params={"type": "task"},
                    headers=project.headers()).json()
    assert (queue["name"], queue["queued"] + queue["running"]) == (OWN, 4)

    gate(f"{hold['hold']}:release").set()
    for run_id in ids:
        wait_for_status(run_id, "COMPLETED", timeout=30)
    assert counts() == (0, 0)


def test_override_then_reset_the_limit_itself(api: Any, project: ProjectKeys) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    response = api.post(_limit(OWN, "/override"), json={"total": 5}, headers=project.headers())
    assert response.status_code == 200, response.text
    item = response.json()
    assert {k: item["total"][k] for k in ("current", "base", "override")} == {
        "current": 5, "base": 2, "override": 5}
    assert datetime.fromisoformat(item["total"]["overriddenAt"]) >= before
    assert item["perKey"]["current"] == 1

    both = api.post(_limit(OWN, "/override"), json={"perKey": 4, "total": 0},
                    headers=project.headers()).json()
    assert (both["perKey"]["current"], both["total"]["current"]) == (4, 0)
    # The key view's base is the limit's per-key bound as enforced.
    key = api.get(_limit(OWN), params={"concurrencyKey": "k"}, headers=project.headers()).json()
    assert key["perKey"]["base"] == 4

    reset = api.post(_limit(OWN, "/reset"), json={}, headers=project.headers())
    assert reset.status_code == 200, reset.text
    assert reset.json()["total"] == {"current": 2, "base": 2, "override": None,
                                     "overriddenAt": None}
    assert reset.json()["perKey"]["current"] == 1
    # No body at all resets too.
    assert api.post(_limit(OWN, "/reset"), headers=project.headers()).status_code == 200


def test_a_key_override_lasts_its_ttl_and_resets_alone(api: Any, project: ProjectKeys) -> None:
    now = datetime.now(UTC)
    response = api.post(_limit(OWN, "/override"),
                        json={"concurrencyKey": "user-1", "perKey": 0, "ttl": "1h"},
                        headers=project.headers())
    assert response.status_code == 200, response.text
    key = response.json()
    assert {k: key["perKey"][k] for k in ("current", "base", "override")} == {
        "current": 0, "base": 1, "override": 0}
    expires = datetime.fromisoformat(key["perKey"]["expiresAt"])
    assert timedelta(minutes=59) < expires - now < timedelta(minutes=61)

    default = api.post(_limit(OWN, "/override"), json={"concurrencyKey": 42, "perKey": 3},
                       headers=project.headers()).json()
    assert default["concurrencyKey"] == "42"
    assert timedelta(days=6.9) < datetime.fromisoformat(default["perKey"]["expiresAt"]) - now
    seconds = api.post(_limit(OWN, "/override"),
                       json={"concurrencyKey": "s", "perKey": 2, "ttl": 120},
                       headers=project.headers()).json()
    assert datetime.fromisoformat(seconds["perKey"]["expiresAt"]) - now < timedelta(minutes=3)
    # The limit itself is untouched.
    assert api.get(_limit(OWN), headers=project.headers()).json()["perKey"]["override"] is None

    reset = api.post(_limit(OWN, "/reset"), json={"concurrencyKey": "user-1"},
                     headers=project.headers())
    assert reset.status_code == 200, reset.text
    assert reset.json()["perKey"] == {"current": 1, "base": 1, "override": None,
                                      "expiresAt": None}
    assert api.get(_limit(OWN), params={"concurrencyKey": "42"},
                   headers=project.headers()).json()["perKey"]["override"] == 3
    again = api.post(_limit(OWN, "/reset"), json={"concurrencyKey": "user-1"},
                     headers=project.headers())
    assert again.status_code == 404
    assert "no override" in again.json()["error"]


def test_pause_and_resume_a_limit(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    paused = api.post(_limit(SHARED, "/pause"), json={"action": "pause"},
                      headers=project.headers())
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    assert api.get(_limit(SHARED), headers=project.headers()).json()["paused"] is True
    # A run holding a paused limit waits for it.
    run_id = triggers.via_api(api, project, task="test-limited-shared")
    shown = api.get(f"/api/v3/runs/{run_id}", headers=project.headers()).json()
    assert shown["status"] == "QUEUED"
    assert api.get(_limit(SHARED), headers=project.headers()).json()["queued"] == 1

    resumed = api.post(_limit(SHARED, "/pause"), json={"action": "resume"},
                       headers=project.headers())
    assert resumed.json()["paused"] is False
    assert (resumed.json()["queued"], resumed.json()["running"]) == (0, 1)
    wait_for_status(run_id, "COMPLETED")


def test_a_limit_named_like_an_action_is_still_found(api: Any, project: ProjectKeys) -> None:
    """The last segment tells the action apart: a POST to ``…/task/x/reset/override`` is an
    override of ``task/x/reset`` (unknown here), never a reset."""
    response = api.post(f"{LIMITS}/task/test-limited/reset/override", json={"total": 1},
                        headers=project.headers())
    assert response.status_code == 404
    assert "task/test-limited/reset" in response.json()["error"]
    assert api.get(_limit(OWN), headers=project.headers()).json()["total"]["override"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "perKey or total"),
        ({"total": -1}, "total"),
        ({"total": 100_001}, "total"),
        ({"total": "5"}, "total"),
        ({"total": 1.5}, "total"),
        ({"perKey": True}, "perKey"),
        ({"perKey": None, "total": None}, "perKey or total"),
        ({"concurrencyKey": "k"}, "perKey"),
        ({"concurrencyKey": "k", "perKey": 1, "total": 2}, "total"),
        ({"ttl": "1d", "total": 1}, "ttl"),
        ({"concurrencyKey": "", "perKey": 1}, "concurrencyKey"),
        ({"concurrencyKey": "x" * 129, "perKey": 1}, "concurrencyKey"),
        ({"concurrencyKey": ["k"], "perKey": 1}, "concurrencyKey"),
        ({"concurrencyKey": "k\u0000", "perKey": 1}, "concurrencyKey"),
        ({"concurrencyKey": "k", "perKey": 1, "ttl": 0}, "ttl"),
        ({"concurrencyKey": "k", "perKey": 1, "ttl": -5}, "ttl"),
        ({"concurrencyKey": "k", "perKey": 1, "ttl": "31d"}, "ttl"),
        ({"concurrencyKey": "k", "perKey": 1, "ttl": "soon"}, "ttl"),
        ({"total": 1, "colour": "red"}, "colour"),
        ([{"total": 1}], "JSON object"),
        (None, "missing"),
    ],
)
def test_a_bad_override_is_a_400_naming_the_field_and_writes_nothing(
    api: Any, project: ProjectKeys, body: Any, field: str
) -> None:
    before = _flow_state(project)
    response = api.post(_limit(OWN, "/override"), json=body, headers=project.headers())
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]
    assert _flow_state(project) == before


@pytest.mark.parametrize(
    ("suffix", "body", "field"),
    [
        ("/pause", {"action": "stop"}, "action"),
        ("/pause", {}, "action"),
        ("/pause", {"action": "pause", "why": "x"}, "why"),
        ("/reset", {"concurrencyKey": ""}, "concurrencyKey"),
        ("/reset", {"total": 1}, "total"),
        ("/override", b"{not json", "not JSON"),
    ],
)
def test_bad_pause_and_reset_bodies_are_400s_and_write_nothing(
    api: Any, project: ProjectKeys, suffix: str, body: Any, field: str
) -> None:
    before = _flow_state(project)
    response = (api.post(_limit(OWN, suffix), content=body, headers=project.headers())
                if isinstance(body, bytes)
                else api.post(_limit(OWN, suffix), json=body, headers=project.headers()))
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]
    assert _flow_state(project) == before


def test_a_bad_key_query_is_a_400_and_a_nul_in_a_name_a_404(
    api: Any, project: ProjectKeys
) -> None:
    for key in ("", "x" * 129, "k\u0000"):
        response = api.get(_limit(OWN), params={"concurrencyKey": key}, headers=project.headers())
        assert response.status_code == 400
        assert "concurrencyKey" in response.json()["error"]
    assert api.get(_limit("a\u0000b"), headers=project.headers()).status_code == 404
    missing = api.get(_queue("a\u0000b"), params={"type": "custom"}, headers=project.headers())
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("POST", "/override", {"total": 1}),
        ("POST", "/override", {"concurrencyKey": "k", "perKey": 1}),
        ("POST", "/reset", {}),
        ("POST", "/reset", {"concurrencyKey": "k"}),
        ("POST", "/pause", {"action": "pause"}),
    ],
)
def test_an_unknown_limit_is_a_404_and_writes_nothing(
    api: Any, project: ProjectKeys, method: str, suffix: str, body: Any
) -> None:
    before = _flow_state(project)
    for name in ("no-such-limit", "task/no-such-task"):
        response = api.request(method, _limit(name, suffix), json=body,
                               headers=project.headers())
        assert response.status_code == 404, response.text
        assert response.json()["error"] == f"Concurrency limit not found: {name!r}"
    assert _flow_state(project) == before


def test_limits_are_per_environment_and_need_a_key(api: Any, project: ProjectKeys) -> None:
    assert api.get(_limit(OWN), headers=project.headers("prod")).status_code == 200
    api.post(_limit(OWN, "/override"), json={"total": 9}, headers=project.headers("prod"))
    assert api.get(_limit(OWN), headers=project.headers()).json()["total"]["current"] == 2
    for method, suffix in (("GET", ""), ("POST", "/override"), ("POST", "/pause")):
        response = api.request(method, _limit(OWN, suffix), json={"total": "bad"})
        assert response.status_code == 401
    assert api.get(LIMITS).status_code == 401


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"page": "0"}, "page must be a whole number from 1"),
        ({"page": "x"}, "page must be a whole number from 1"),
        ({"perPage": "101"}, "perPage must be a whole number from 1 to 100"),
        ({"perPage": "0"}, "perPage must be a whole number from 1 to 100"),
    ],
)
def test_bad_pages_are_400s(
    api: Any, project: ProjectKeys, params: dict[str, str], error: str
) -> None:
    for path in (LIMITS, QUEUES):
        response = api.get(path, params=params, headers=project.headers())
        assert (response.status_code, response.json()) == (400, {"error": error})


# --- queues -----------------------------------------------------------------------------


def test_list_queues_in_pages(api: Any, project: ProjectKeys) -> None:
    # Every queue of the test tasks on one page (the default page holds 20).
    response = api.get(QUEUES, params={"perPage": "100"}, headers=project.headers())
    assert response.status_code == 200, response.text
    body = response.json()
    by_name = {item["name"]: item for item in body["data"]}
    assert by_name["emails"]["type"] == "custom"
    assert by_name["task/test-echo"]["type"] == "task"
    assert {item["version"] for item in body["data"]} == {"V2"}
    assert {item["concurrencyLimit"] for item in body["data"]} == {None}
    assert body["pagination"]["count"] == len(body["data"])
    names = [item["name"] for item in body["data"]]
    assert names == sorted(names)
    page = api.get(QUEUES, params={"perPage": "2", "page": "2"}, headers=project.headers()).json()
    assert [item["name"] for item in page["data"]] == names[2:4]
    assert page["pagination"]["totalPages"] == -(-len(names) // 2)


def test_retrieve_a_queue_by_id_task_or_name(api: Any, project: ProjectKeys) -> None:
    by_task = api.get(_queue("test-limited"), params={"type": "task"}, headers=project.headers())
    assert by_task.status_code == 200, by_task.text
    queue = by_task.json()
    assert queue["id"].startswith("queue_")
    assert queue == {
        "id": queue["id"], "name": OWN, "type": "task", "running": 0, "queued": 0,
        "paused": False, "concurrencyLimit": None, "version": "V2",
    }
    # The task queue's full name, encoded twice (the SDK), once, or not at all.
    for path in (_queue(OWN), f"{QUEUES}/task%2Ftest-limited", f"{QUEUES}/{OWN}"):
        again = api.get(path, params={"type": "task"}, headers=project.headers())
        assert again.json() == queue, path
    assert api.get(_queue(queue["id"]), headers=project.headers()).json() == queue
    emails = api.get(_queue("emails"), params={"type": "custom"}, headers=project.headers())
    assert (emails.json()["name"], emails.json()["type"]) == ("emails", "custom")


def test_pause_and_resume_a_queue(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    paused = api.post(_queue("test-echo", "/pause"), json={"type": "task", "action": "pause"},
                      headers=project.headers())
    assert paused.status_code == 200, paused.text
    assert (paused.json()["name"], paused.json()["paused"]) == ("task/test-echo", True)
    run_id = triggers.via_api(api, project, task="test-echo")
    shown = api.get(f"/api/v3/runs/{run_id}", headers=project.headers()).json()
    assert shown["status"] == "QUEUED"

    queue_id = paused.json()["id"]
    resumed = api.post(_queue(queue_id, "/pause"), json={"type": "id", "action": "resume"},
                       headers=project.headers())
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    wait_for_status(run_id, "COMPLETED")


@pytest.mark.parametrize("queue", ["test-limited", "emails"])
def test_queue_level_concurrency_calls_are_refused_pointing_at_concurrency_limits(
    api: Any, project: ProjectKeys, queue: str
) -> None:
    """Queues of this model (V2) are only lines: a limit is changed where it lives."""
    kind = "task" if queue == "test-limited" else "custom"
    before = _flow_state(project)
    for suffix, body in (("/concurrency/override", {"type": kind, "concurrencyLimit": 7}),
                         ("/concurrency/reset", {"type": kind})):
        response = api.post(_queue(queue, suffix), json=body, headers=project.headers())
        assert response.status_code == 400, response.text
        assert "no concurrency limit of its own" in response.json()["error"]
        assert "/api/v1/concurrency-limits/" in response.json()["error"]
    assert _flow_state(project) == before
    missing = api.post(_queue("no-such-task", "/concurrency/reset"), json={"type": "task"},
                       headers=project.headers())
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("suffix", "body", "status", "error"),
    [
        ("/pause", {"type": "task", "action": "halt"}, 400, "action"),
        ("/pause", {"type": "queue", "action": "pause"}, 400, "type"),
        ("/pause", {"type": "task"}, 400, "action"),
        ("/concurrency/override", {"type": "task", "concurrencyLimit": -1}, 400,
         "concurrencyLimit"),
        ("/concurrency/override", {"type": "task", "concurrencyLimit": "3"}, 400,
         "concurrencyLimit"),
        ("/concurrency/override", {"type": "task"}, 400, "concurrencyLimit"),
        ("/concurrency/reset", {"type": "task", "extra": 1}, 400, "extra"),
    ],
)
def test_bad_queue_bodies_are_400s_and_write_nothing(
    api: Any, project: ProjectKeys, suffix: str, body: Any, status: int, error: str
) -> None:
    before = _flow_state(project)
    response = api.post(_queue("test-limited", suffix), json=body, headers=project.headers())
    assert response.status_code == status, response.text
    assert error in response.json()["error"]
    assert _flow_state(project) == before


def test_a_named_queue_has_no_limit_of_its_own_to_override(
    api: Any, project: ProjectKeys
) -> None:
    before = _flow_state(project)
    for suffix, body in (("/concurrency/override", {"type": "custom", "concurrencyLimit": 3}),
                         ("/concurrency/reset", {"type": "custom"})):
        response = api.post(_queue("emails", suffix), json=body, headers=project.headers())
        assert response.status_code == 400, response.text
        assert "/api/v1/concurrency-limits" in response.json()["error"]
    assert _flow_state(project) == before


def test_an_unknown_queue_is_a_404_and_a_bad_type_a_400(api: Any, project: ProjectKeys) -> None:
    before = _flow_state(project)
    cases = [
        ("GET", _queue("no-such-task"), {"type": "task"}, None),
        ("GET", _queue("queue_nope"), None, None),
        ("GET", _queue("test-limited"), {"type": "custom"}, None),
        ("POST", _queue("nowhere", "/pause"), None, {"type": "custom", "action": "pause"}),
        ("POST", _queue("no-such-task", "/concurrency/override"), None,
         {"type": "task", "concurrencyLimit": 1}),
        ("POST", _queue("no-such-task", "/concurrency/reset"), None, {"type": "task"}),
    ]
    for method, path, params, body in cases:
        response = api.request(method, path, params=params, json=body, headers=project.headers())
        assert (response.status_code, response.json()) == (404, {"error": "Queue not found"}), path
    bad = api.get(_queue("test-limited"), params={"type": "name"}, headers=project.headers())
    assert bad.status_code == 400
    assert "type must be one of id, task, custom" in bad.json()["error"]
    assert api.get(QUEUES).status_code == 401
    assert _flow_state(project) == before


# --- filter[queue] ----------------------------------------------------------------------


def test_runs_list_and_bulk_actions_filter_by_queue(api: Any, project: ProjectKeys) -> None:
    echo = triggers.via_api(api, project, task="test-echo", delay="1h")
    named = triggers.via_api(api, project, task="test-echo", delay="1h", queue="q1")
    emails = triggers.via_api(api, project, task="test-limited-shared", delay="1h")

    def listed(value: str) -> list[str]:
        response = api.get("/api/v1/runs", params={"filter[queue]": value},
                           headers=project.headers())
        assert response.status_code == 200, response.text
        return sorted(run["id"] for run in response.json()["data"])

    assert listed("task/test-echo") == [echo]
    assert listed("q1") == [named]
    assert listed("emails") == [emails]
    assert listed("task/test-echo,q1") == sorted([echo, named])
    assert listed("task/no-such-task") == []

    def dry_run(queue: Any) -> list[str]:
        response = api.post("/api/v1/bulk-actions", headers=project.headers(),
                            json={"action": "cancel", "dryRun": True, "filter": {"queue": queue}})
        assert response.status_code == 200, response.text
        return sorted(response.json()["runIds"])

    assert dry_run({"type": "task", "name": "test-echo"}) == [echo]
    assert dry_run([{"type": "custom", "name": "q1"}, {"type": "custom", "name": "emails"}]) == (
        sorted([named, emails])
    )
    assert dry_run("task/test-echo") == [echo]
    bad = api.post("/api/v1/bulk-actions", headers=project.headers(),
                   json={"action": "cancel", "dryRun": True,
                         "filter": {"queue": {"type": "queue", "name": "x"}}})
    assert bad.status_code == 400
    assert "filter.queue" in bad.json()["error"]
