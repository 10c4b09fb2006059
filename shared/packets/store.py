"""Where packet bytes live: a Postgres column (the default) or an S3-compatible bucket.

The S3 client (boto3, the ``s3`` extra) is imported only when that store is configured.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from reprise_server.shared.errors import ServiceUnavailable
from reprise_server.shared.settings import Settings, get_settings


class PacketStoreUnavailable(ServiceUnavailable):
    def __init__(self, detail: str) -> None:
        super().__init__(f"The packet store is unavailable: {detail}")


@lru_cache(maxsize=4)
def _s3_client(endpoint_url: str | None, region: str, key_id: str | None,
               secret: str | None) -> Any:
    try:
        import boto3
    except ImportError:  # pragma: no cover - depends on the install
        raise PacketStoreUnavailable("REPRISE_PACKET_STORE=s3 needs boto3: "
                                     "pip install './server[s3]'") from None
    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name=region,
        aws_access_key_id=key_id, aws_secret_access_key=secret,
    )


def s3_client(settings: Settings | None = None) -> Any:
    settings = settings or get_settings()
    return _s3_client(settings.s3_endpoint_url, settings.s3_region,
                      settings.s3_access_key_id, settings.s3_secret_access_key)


def object_key(environment_id: str, path: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return f"{settings.s3_key_prefix}{environment_id}/{path}"


def put_object(key: str, data: bytes, content_type: str) -> None:
    settings = get_settings()
    try:
        s3_client(settings).put_object(
            Bucket=settings.s3_bucket, Key=key, Body=data, ContentType=content_type
        )
    except PacketStoreUnavailable:
        raise
    except Exception as exc:  # botocore's errors: endpoint down, bucket missing, denied
        raise PacketStoreUnavailable(type(exc).__name__) from None


def get_object(key: str) -> bytes:
    settings = get_settings()
    try:
        response = s3_client(settings).get_object(Bucket=settings.s3_bucket, Key=key)
        return bytes(response["Body"].read())
    except PacketStoreUnavailable:
        raise
    except Exception as exc:
        raise PacketStoreUnavailable(type(exc).__name__) from None
