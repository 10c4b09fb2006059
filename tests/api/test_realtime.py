"""The realtime routes at the API: Electric's protocol (headers, messages, offsets), and
long-polls woken by the change itself — not by polling (the SDK-level test is
tests/e2e/test_sdk_realtime.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from reprise_server.api import realtime_hub
from reprise_server.api.routes import realtime
from reprise_server.shared.db import transaction
from reprise_server.shared.runs.service import cancel_run
from reprise_server.shared.settings import get_settings
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, wait_for


def subscribe(api: Any, project: ProjectKeys, path: str, **params: str) -> Any:
    response = api.get(path, params=params, headers=project.headers())
    assert response.status_code == 200, response.text
    return response


def rows(response: Any) -> list[dict[str, Any]]:
    messages = response.json()
    assert messages[-1] == {"headers": {"control": "up-to-date"}}
    return [m["value"] for m in messages[:-1]]


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every shape read a realtime request makes (the time it was done)."""
    reads: list[float] = []
    original = realtime._read

    def counting(*args: Any) -> Any:
        try:
            return original(*args)
        finally:
            reads.append(time.monotonic())

    monkeypatch.setattr(realtime, "_read", counting)
    return reads


def test_the_first_request_is_the_whole_shape_with_electrics_headers(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h", tags=["rt"])
    response = subscribe(api, project, f"/realtime/v1/runs/{run_id}", offset="-1", log="full")
    for header in ("electric-handle", "electric-offset", "electric-schema", "electric-up-to-date"):
        assert header in response.headers, header
    [message, _] = response.json()
    assert message["headers"]["operation"] == "insert"
    row = message["value"]
    assert (row["friendlyId"], row["status"], row["runTags"]) == (run_id, "DELAYED", ["rt"])
    assert row["payloadType"] == "application/json"
    assert not row["createdAt"].endswith("Z")  # Electric's timestamps: the SDK adds the Z


def test_a_live_poll_answers_as_soon_as_the_run_changes(
    api: Any, project: ProjectKeys, counted_reads: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(realtime, "LIVE_POLL_SECONDS", 20.0)
    run_id = triggers.via_api(api, project, delay="1h")
    path = f"/realtime/v1/runs/{run_id}"
    offset = subscribe(api, project, path, offset="-1").headers["electric-offset"]
    answered: list[Any] = []
    started = time.monotonic()
    poll = threading.Thread(target=lambda: answered.append(
        subscribe(api, project, path, offset=offset, live="true", handle="run", cursor="1")
    ))
    poll.start()
    # The initial read, then the live one done: the poll now waits on the hub, where it
    # registered before reading (a change from here on wakes it, whenever it lands).
    wait_for(lambda: len(counted_reads) >= 2, timeout=10, interval=0.005, what="the live read")
    with transaction() as session:
        cancel_run(session, run_id)
    poll.join(timeout=10)
    assert answered, "the live poll did not answer"
    elapsed = time.monotonic() - started
    [row] = rows(answered[0])
    assert (row["friendlyId"], row["status"]) == (run_id, "CANCELED")
    assert row["completedAt"]
    assert answered[0].json()[0]["headers"]["operation"] == "update"
    assert answered[0].headers["electric-offset"] != offset
    assert "electric-cursor" in answered[0].headers
    assert elapsed < 5  # woken by the change, not by the 20 s timeout
    assert len(counted_reads) == 3  # one read when it started, one when it was woken


def test_a_quiet_live_poll_reads_twice_and_answers_up_to_date(
    api: Any, project: ProjectKeys, counted_reads: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(realtime, "LIVE_POLL_SECONDS", 1.0)
    run_id = triggers.via_api(api, project, delay="1h")
    path = f"/realtime/v1/runs/{run_id}"
    offset = subscribe(api, project, path, offset="-1").headers["electric-offset"]
    # Other runs of the environment change meanwhile: they do not concern this shape.
    for _ in range(5):
        triggers.via_api(api, project, delay="1h")
    counted_reads.clear()
    response = subscribe(api, project, path, offset=offset, live="true", handle="run")
    assert rows(response) == []
    assert len(counted_reads) == 2  # no polling: once at the start, once at the timeout


def test_a_change_made_between_two_requests_is_in_the_next_one(
    api: Any, project: ProjectKeys
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    path = f"/realtime/v1/runs/{run_id}"
    offset = subscribe(api, project, path, offset="-1").headers["electric-offset"]
    with transaction() as session:
        cancel_run(session, run_id)
    response = subscribe(api, project, path, offset=offset, live="true", handle="run")
    assert [row["status"] for row in rows(response)] == ["CANCELED"]
    later = response.headers["electric-offset"]
    unchanged = subscribe(api, project, path, offset=later, handle="run")
    assert rows(unchanged) == []


def test_tag_and_batch_shapes_hold_their_runs_only(api: Any, project: ProjectKeys) -> None:
    tagged = triggers.via_api(api, project, delay="1h", tags=["a", "b"])
    triggers.via_api(api, project, delay="1h", tags=["a"])
    response = subscribe(api, project, "/realtime/v1/runs", tags="a,b", offset="-1")
    assert [row["friendlyId"] for row in rows(response)] == [tagged]
    handle = response.headers["electric-handle"]
    assert handle.startswith("tags-")
    offset = response.headers["electric-offset"]
    newer = triggers.via_api(api, project, delay="1h", tags=["b", "a"])
    live = subscribe(api, project, "/realtime/v1/runs", tags="a,b", offset=offset,
                     live="true", handle=handle)
    assert [row["friendlyId"] for row in rows(live)] == [newer]
    unknown = api.get("/realtime/v1/batches/batch_nope?offset=-1", headers=project.headers())
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Batch not found"})


@pytest.mark.parametrize(
    ("params", "needle"),
    [({"offset": "12:34"}, "offset"), ({"offset": "5_1"}, "offset"),
     ({"skipColumns": "id"}, "cannot skip id"), ({"skipColumns": "nope"}, "nope"),
     ({"log": "changes_only"}, "log")],
)
def test_bad_protocol_parameters_are_400(
    api: Any, project: ProjectKeys, params: dict[str, str], needle: str
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    response = api.get(f"/realtime/v1/runs/{run_id}", params=params, headers=project.headers())
    assert response.status_code == 400
    assert needle in response.json()["error"]


def test_skip_columns_leaves_them_out(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    response = subscribe(api, project, f"/realtime/v1/runs/{run_id}", offset="-1",
                         skipColumns="payload,payloadType,metadata")
    [row] = rows(response)
    assert {"payload", "payloadType", "metadata"}.isdisjoint(row)
    assert row["friendlyId"] == run_id


def test_a_replay_is_subscribable_before_its_command_is_applied(
    api: Any, project: ProjectKeys, parked_commands: Any
) -> None:
    original = triggers.via_api(api, project, delay="1h")
    replay = api.post(f"/api/v1/runs/{original}/replay", headers=project.headers())
    new_id = replay.json()["id"]
    token = {"Authorization": f"Bearer {replay.headers['x-trigger-jwt']}"}
    response = api.get(f"/realtime/v1/runs/{new_id}?offset=-1", headers=token)
    assert response.status_code == 200, response.text
    [row] = rows(response)
    assert row["friendlyId"] == new_id
    assert "payload" not in row or row["payload"] is None  # a public token: no payload


def test_a_tag_subscription_sleeps_through_changes_of_other_runs(
    api: Any, project: ProjectKeys, counted_reads: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(realtime, "LIVE_POLL_SECONDS", 1.5)
    first = subscribe(api, project, "/realtime/v1/runs", tags="watched", offset="-1")
    params = {"tags": "watched", "offset": first.headers["electric-offset"], "live": "true",
              "handle": first.headers["electric-handle"]}
    answered: list[Any] = []
    poll = threading.Thread(
        target=lambda: answered.append(subscribe(api, project, "/realtime/v1/runs", **params))
    )
    counted_reads.clear()
    poll.start()
    while not counted_reads:
        time.sleep(0.01)
    for _ in range(3):  # runs without the tag change: the poll is not woken
        triggers.via_api(api, project, delay="1h", tags=["unwatched"])
    poll.join(timeout=10)
    assert rows(answered[0]) == []
    assert len(counted_reads) == 2  # once at the start, once at the timeout


def test_a_read_that_would_be_cut_short_is_refused_never_partial(
    api: Any, project: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An offset is a snapshot, so a read cannot stop after the first N changes: more than
    the limit at once is a 400 naming why, never a silent loss of the rest."""
    from reprise_server.shared.realtime import shapes

    monkeypatch.setattr(shapes, "MAX_ROWS", 2)
    tag = "cut-short"
    first = [triggers.via_api(api, project, delay="1h", tags=[tag]) for _ in range(2)]
    response = subscribe(api, project, "/realtime/v1/runs", tags=tag, offset="-1")
    assert sorted(row["friendlyId"] for row in rows(response)) == sorted(first)
    offset, handle = response.headers["electric-offset"], response.headers["electric-handle"]
    for _ in range(3):
        triggers.via_api(api, project, delay="1h", tags=[tag])
    refused = api.get("/realtime/v1/runs", headers=project.headers(),
                      params={"tags": tag, "offset": offset, "handle": handle})
    assert refused.status_code == 400
    assert "more than 2 runs" in refused.json()["error"]
    whole = api.get("/realtime/v1/runs", headers=project.headers(),
                    params={"tags": tag, "offset": "-1"})
    assert (whole.status_code, "matches more than 2 runs" in whole.json()["error"]) == (400, True)


def test_an_offloaded_payload_is_its_packet_path_typed_application_store(
    api: Any, project: ProjectKeys
) -> None:
    """As in Trigger.dev's row: the SDK reads the packet through /api/v1/packets/{path}."""
    from tests.api.test_packets import offload

    path = offload(api, project, "rt-offloaded/payload.json", {"big": "value"})
    triggered = api.post(
        "/api/v1/tasks/test-echo/trigger", headers=project.headers(),
        json={"payload": path, "options": {"payloadType": "application/store", "delay": "1h"}},
    )
    assert triggered.status_code == 200, triggered.text
    run_id = triggered.json()["id"]
    [row] = rows(subscribe(api, project, f"/realtime/v1/runs/{run_id}", offset="-1"))
    assert (row["payload"], row["payloadType"]) == (path, "application/store")
    packet = api.get(f"/api/v1/packets/{row['payload']}", headers=project.headers())
    assert packet.status_code == 200


@pytest.fixture
def listening() -> Iterator[psycopg.Connection[Any]]:
    """A connection listening on the runs channel, with no api process registered (the
    rows earlier tests' hubs left are removed)."""
    url = make_url(get_settings().database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f"LISTEN {realtime_hub.CHANNEL}")
        with transaction() as session:
            session.execute(text("DELETE FROM realtime_listeners"))
        yield conn


def notified_runs(conn: psycopg.Connection[Any]) -> list[str]:
    """The runs notified so far: a marker is notified last, and Postgres delivers
    notifications in commit order, so everything committed before it has arrived."""
    with transaction() as session:
        session.execute(text(f"NOTIFY {realtime_hub.CHANNEL}, 'marker'"))
    runs = []
    for notification in conn.notifies(timeout=10):
        if notification.payload == "marker":
            return runs
        runs.append(json.loads(notification.payload)["r"])
    raise AssertionError("the marker notification never came")


def register(expires_in: str) -> None:
    with transaction() as session:
        session.execute(text(
            "INSERT INTO realtime_listeners VALUES ('test', now() + CAST(:e AS interval)) "
            "ON CONFLICT (listener) DO UPDATE SET expires_at = excluded.expires_at"
        ), {"e": expires_in})


def test_run_writes_notify_only_while_an_api_process_is_registered(
    api: Any, project: ProjectKeys, listening: psycopg.Connection[Any]
) -> None:
    quiet = triggers.via_api(api, project, delay="1h")
    assert notified_runs(listening) == []
    register("1 minute")
    with transaction() as session:
        cancel_run(session, quiet)
    heard = triggers.via_api(api, project, delay="1h")
    assert notified_runs(listening) == [quiet, heard]
    register("-1 second")  # lapsed: the process that kept it alive is gone
    with transaction() as session:
        cancel_run(session, heard)
    assert notified_runs(listening) == []
    # Stamped all the same: a subscription reading "changed since" still sees them.
    with transaction() as session:
        stamps = session.execute(text(
            "SELECT count(*) FROM runs WHERE id IN (:a, :b) AND realtime_xid IS NOT NULL"
        ), {"a": quiet, "b": heard}).scalar_one()
    assert stamps == 2


def test_the_hub_registers_while_subscriptions_wait_and_leaves_when_idle(
    api: Any, project: ProjectKeys, listening: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(realtime_hub, "IDLE_SECONDS", 0.3)
    monkeypatch.setattr(realtime_hub, "REFRESH_SECONDS", 0.1)
    monkeypatch.setattr(realtime, "LIVE_POLL_SECONDS", 20.0)

    def registered() -> int:
        with transaction() as session:
            return int(session.execute(text(
                "SELECT count(*) FROM realtime_listeners WHERE expires_at > now()"
            )).scalar_one())

    for _ in range(2):  # the second time, a hub that went idle starts listening again
        run_id = triggers.via_api(api, project, delay="1h")
        path = f"/realtime/v1/runs/{run_id}"
        offset = subscribe(api, project, path, offset="-1").headers["electric-offset"]
        answered: list[Any] = []
        poll = threading.Thread(target=lambda into=answered, path=path, offset=offset: (
            into.append(subscribe(api, project, path, offset=offset, live="true",
                                  handle="run"))))
        poll.start()
        wait_for(registered, timeout=10, what="the hub's registration")
        with transaction() as session:
            cancel_run(session, run_id)
        poll.join(timeout=10)
        assert [row["status"] for row in rows(answered[0])] == ["CANCELED"]
        # Nobody waits any more: after IDLE_SECONDS the hub unregisters, and run writes
        # notify nobody.
        wait_for(lambda: registered() == 0, timeout=10, what="the hub to leave")
        triggers.via_api(api, project, delay="1h")
        assert notified_runs(listening) == [run_id]
