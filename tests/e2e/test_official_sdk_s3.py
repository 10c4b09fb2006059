"""The official SDK's payload offload with the S3 packet store: a live API and the worker
keep packets in a real S3-compatible server (moto in server mode, in a subprocess)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from reprise_server.shared.settings import get_settings
from tests.support.fixtures import ProjectKeys, run_row
from tests.support.live_server import LiveServer, live_api
from tests.support.s3 import moto_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BUCKET = "reprise-e2e-packets"


@pytest.fixture(scope="module")
def s3_client() -> Iterator[Any]:
    import boto3

    with moto_server() as endpoint:
        settings = {
            "REPRISE_PACKET_STORE": "s3",
            "REPRISE_S3_BUCKET": BUCKET,
            "REPRISE_S3_ENDPOINT_URL": endpoint,
            "REPRISE_S3_ACCESS_KEY_ID": "test",
            "REPRISE_S3_SECRET_ACCESS_KEY": "test",
        }
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket=BUCKET)
        before = {key: os.environ.get(key) for key in settings}
        os.environ.update(settings)  # the live API inherits them; this process's worker too
        get_settings.cache_clear()
        try:
            yield client
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def live_server(s3_client: Any) -> Iterator[LiveServer]:
    with live_api() as server:
        yield server


def test_offloaded_payload_lands_in_the_bucket_and_the_run_gets_it(
    run_scenario: Any, project: ProjectKeys, celery_worker: Any, s3_client: Any
) -> None:
    scenario = run_scenario("offloaded_payload.mjs", project.keys["dev"], E2E_PAYLOAD_KIB="300")

    handle = scenario.ok("trigger-300")
    done = scenario.ok("completed-300")
    assert (done["status"], done["blobLength"], done["whenIsDate"]) == (
        "COMPLETED", 300 * 1024, True)
    assert done["output"]["message"] == "Hello, Big!"
    path = run_row(handle["id"]).payload
    stored = s3_client.get_object(
        Bucket=BUCKET, Key=f"packets/{project.environment_ids['dev']}/{path}"
    )
    assert len(json.loads(stored["Body"].read())["json"]["blob"]) == 300 * 1024
