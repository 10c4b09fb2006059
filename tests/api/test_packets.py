"""Packets: the SDK's offload handshake, signed object URLs, both packet stores,
the size limit, and a worker executing a run whose payload was offloaded."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from reprise_server.shared.projects.tokens import sign_object
from reprise_server.shared.settings import get_settings
from tests.support.fixtures import ProjectKeys, run_row, wait_for_status
from tests.support.s3 import moto_server

SUPERJSON = "application/super+json"


def _local(url: str) -> str:
    """The path and query of a URL the API signed (the TestClient talks to it directly)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def offload(api: Any, project: ProjectKeys, path: str, value: Any) -> str:
    """What the official SDK does for a large payload: presign, PUT the superjson text."""
    presign = api.put(f"/api/v2/packets/{path}", headers=project.headers())
    assert presign.status_code == 200, presign.text
    body = presign.json()
    assert body["storagePath"] == path
    data = json.dumps({"json": value})
    upload = api.put(_local(body["presignedUrl"]), content=data,
                     headers={"content-type": SUPERJSON})
    assert upload.status_code == 200, upload.text
    return str(body["storagePath"])


def trigger_stored(api: Any, project: ProjectKeys, path: str, task: str = "test-echo") -> Any:
    return api.post(
        f"/api/v1/tasks/{task}/trigger",
        json={"payload": path, "options": {"payloadType": "application/store",
                                           "payloadSize": 1}},
        headers=project.headers(),
    )


def test_offloaded_payload_runs_with_its_value_and_is_served_through_a_presigned_url(
    api: Any, project: ProjectKeys, celery_worker: Any
) -> None:
    value = {"blob": "x" * (200 * 1024), "n": 1}
    path = offload(api, project, "run_abc/payload.json", value)
    response = trigger_stored(api, project, path)
    assert response.status_code == 200, response.text
    run_id = response.json()["id"]

    wait_for_status(run_id, "COMPLETED")
    assert run_row(run_id).output["payload"] == value  # the worker got the real payload
    run = api.get(f"/api/v3/runs/{run_id}", headers=project.headers()).json()
    assert "payload" not in run
    download = api.get(_local(run["payloadPresignedUrl"]))
    assert download.status_code == 200
    assert download.headers["content-type"] == SUPERJSON
    assert json.loads(download.text) == {"json": value}
    # The SDK's other download presigns: by path, and by run and field.
    by_path = api.get(f"/api/v1/packets/{path}", headers=project.headers())
    assert by_path.status_code == 200, by_path.text
    assert api.get(_local(by_path.json()["presignedUrl"])).text == download.text
    by_run = api.get(f"/api/v1/runs/{run_id}/packets/payload", headers=project.headers())
    assert api.get(_local(by_run.json()["presignedUrl"])).text == download.text
    # Strait's JobRun inlines the payload itself.
    assert api.get(f"/v1/runs/{run_id}", headers=project.headers()).json()["payload"] == value


def test_a_replay_into_another_environment_carries_the_offloaded_value(
    api: Any, project: ProjectKeys
) -> None:
    """Packets belong to their environment: a replay elsewhere gets the value inline, not a
    path its environment has no packet for."""
    value = {"blob": "y" * (150 * 1024)}
    path = offload(api, project, "run_rep/payload.json", value)
    original = api.post(
        "/api/v1/tasks/test-echo/trigger", headers=project.headers(),
        json={"payload": path, "options": {"payloadType": "application/store", "delay": "1h"}},
    ).json()["id"]
    replay = api.post(f"/api/v1/runs/{original}/replay", json={"environment": "staging"},
                      headers=project.headers())
    assert replay.status_code == 200, replay.text
    new_id = replay.json()["id"]
    assert api.get(f"/api/v3/runs/{new_id}", headers=project.headers("staging")).status_code == 200
    row = run_row(new_id)
    assert (row.environment_id, row.payload_type) == (
        project.environment_ids["staging"], "application/json")
    assert row.payload == value
    same_env = api.post(f"/api/v1/runs/{original}/replay", headers=project.headers()).json()
    assert api.get(f"/api/v3/runs/{same_env['id']}", headers=project.headers()).status_code == 200
    assert run_row(same_env["id"]).payload == path  # within one environment, the packet


def test_a_packet_path_with_url_characters_round_trips_through_its_presigned_urls(
    api: Any, project: ProjectKeys
) -> None:
    path = "odd name?#%/payload.json"
    encoded = quote(path, safe="/")
    presign = api.put(f"/api/v2/packets/{encoded}", headers=project.headers())
    assert presign.status_code == 200, presign.text
    assert presign.json()["storagePath"] == path
    url = presign.json()["presignedUrl"]
    assert urlsplit(url).path.endswith(f"/{encoded}")
    upload = api.put(_local(url), content=b'{"json": 1}', headers={"content-type": SUPERJSON})
    assert upload.status_code == 200, upload.text
    download = api.get(f"/api/v1/packets/{encoded}", headers=project.headers())
    assert download.status_code == 200, download.text
    assert api.get(_local(download.json()["presignedUrl"])).content == b'{"json": 1}'


def test_a_trigger_naming_a_packet_never_uploaded_is_refused(
    api: Any, project: ProjectKeys
) -> None:
    response = trigger_stored(api, project, "never/uploaded.json")

    assert response.status_code == 400
    assert "never/uploaded.json" in response.json()["error"]


def test_signed_urls_are_bound_to_method_path_environment_and_time(
    api: Any, project: ProjectKeys
) -> None:
    url = api.put("/api/v2/packets/a/b.json", headers=project.headers()).json()["presignedUrl"]
    local = _local(url)

    assert api.get(local).status_code == 404  # a PUT URL does not download
    assert api.put(local.replace("/a/b.json", "/a/c.json"), content=b"{}").status_code == 404
    other_env = project.environment_ids["prod"]
    assert api.put(local.replace(project.environment_ids["dev"], other_env),
                   content=b"{}").status_code == 404
    past = int(time.time()) - 1
    dev = project.environment_ids["dev"]
    expired = (f"/api/v1/packet-objects/{dev}/a/b.json?expires={past}"
               f"&signature={sign_object('PUT', dev, 'a/b.json', past)}")
    assert api.put(expired, content=b"{}").status_code == 404
    assert api.put("/api/v2/packets/../etc", headers=project.headers()).status_code in (400, 404)
    assert api.put("/api/v2/packets/a/b.json").status_code == 401
    assert api.get("/api/v1/packets/missing.json", headers=project.headers()).status_code == 404


def test_a_packet_over_the_limit_is_413_and_not_stored(api: Any, project: ProjectKeys) -> None:
    url = api.put("/api/v2/packets/big.json", headers=project.headers()).json()["presignedUrl"]
    too_big = b"x" * (get_settings().max_packet_bytes + 1)

    response = api.put(_local(url), content=too_big, headers={"content-type": SUPERJSON})

    assert response.status_code == 413
    assert "Packet too large" in response.json()["error"]
    assert api.get("/api/v1/packets/big.json", headers=project.headers()).status_code == 404


@pytest.fixture
def s3_store() -> Iterator[Any]:
    """REPRISE_PACKET_STORE=s3 against a moto server (for this process: API and worker)."""
    import boto3

    with moto_server() as endpoint:
        env = {
            "REPRISE_PACKET_STORE": "s3",
            "REPRISE_S3_BUCKET": "reprise-packets",
            "REPRISE_S3_ENDPOINT_URL": endpoint,
            "REPRISE_S3_ACCESS_KEY_ID": "test",
            "REPRISE_S3_SECRET_ACCESS_KEY": "test",
        }
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket="reprise-packets")
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            get_settings.cache_clear()
            try:
                yield client
            finally:
                get_settings.cache_clear()
        get_settings.cache_clear()


def test_s3_store_keeps_packets_in_the_bucket_and_runs_read_them(
    api: Any, project: ProjectKeys, celery_worker: Any, s3_store: Any
) -> None:
    value = {"blob": "s" * (150 * 1024)}
    path = offload(api, project, "run_s3/payload.json", value)

    key = f"packets/{project.environment_ids['dev']}/{path}"
    stored = s3_store.get_object(Bucket="reprise-packets", Key=key)
    assert json.loads(stored["Body"].read()) == {"json": value}
    assert stored["ContentType"] == SUPERJSON
    run_id = trigger_stored(api, project, path).json()["id"]
    wait_for_status(run_id, "COMPLETED")
    assert run_row(run_id).output["payload"] == value
    run = api.get(f"/api/v3/runs/{run_id}", headers=project.headers()).json()
    assert json.loads(api.get(_local(run["payloadPresignedUrl"])).text) == {"json": value}


def test_an_unreachable_bucket_is_503_not_a_lost_packet(
    api: Any, project: ProjectKeys, s3_store: Any
) -> None:
    s3_store.delete_bucket(Bucket="reprise-packets")
    url = api.put("/api/v2/packets/gone.json", headers=project.headers()).json()["presignedUrl"]

    response = api.put(_local(url), content=b'{"json":1}', headers={"content-type": SUPERJSON})

    assert response.status_code == 503
    assert "packet store" in response.json()["error"]
    # nothing recorded either:
    assert api.get("/api/v1/packets/gone.json", headers=project.headers()).status_code == 404
