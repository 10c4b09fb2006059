"""Packets: presigned upload and download URLs for payloads the SDK offloads, the
signed object URLs themselves, and signed downloads of a run's large payload or output.

The SDK's calls: ``PUT /api/v2/packets/{path}`` (createUploadPayloadUrl: ``{presignedUrl,
storagePath}``), then a PUT of the bytes to ``presignedUrl``; ``GET /api/v1/packets/{path}``
(getPayloadUrl) and ``GET /api/v1/runs/{runId}/packets/{field}`` (getRunPacketUrl):
``{presignedUrl}`` to download. Presigned URLs are HMAC-signed, expire after
``REPRISE_PACKET_URL_SECONDS`` and need no key (as S3's own presigned URLs).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from reprise_server.api.deps import Caller, DbSession, EdgeRoute, Reader, RunId, api_applier
from reprise_server.api.presenters import packet_url
from reprise_server.shared.errors import NotFound
from reprise_server.shared.packets.errors import PacketNotFound
from reprise_server.shared.packets.service import (
    OBJECT_ROUTE,
    check_object_url,
    check_path,
    load_packet,
    object_url,
    packet_exists,
    store_packet,
)
from reprise_server.shared.payloads import STORE
from reprise_server.shared.projects.tokens import verify_packet
from reprise_server.shared.reads import read_packet, visible_run

router = APIRouter(tags=["packets"], route_class=EdgeRoute)


@router.put("/api/v2/packets/{path:path}", summary="A presigned URL to upload a packet")
def create_upload_url(path: str, auth: Caller, request: Request) -> JSONResponse:
    check_path(path)
    url = object_url(str(request.base_url), "PUT", auth.environment_id, path)
    return JSONResponse({"presignedUrl": url, "storagePath": path})


@router.get("/api/v1/packets/{path:path}", summary="A presigned URL to download a packet")
def create_download_url(path: str, auth: Reader, session: DbSession,
                        request: Request) -> JSONResponse:
    check_path(path)
    if auth.is_public or not packet_exists(session, auth.environment_id, path):
        raise PacketNotFound(path)
    return JSONResponse(
        {"presignedUrl": object_url(str(request.base_url), "GET", auth.environment_id, path)}
    )


@router.get("/api/v1/runs/{run_id}/packets/{field}",
            summary="A presigned URL to download a run's payload or output")
def create_run_packet_url(field: str, auth: Reader, run_id: RunId, session: DbSession,
                          request: Request) -> JSONResponse:
    if field not in ("payload", "output"):
        raise NotFound(f"Unknown packet field: {field} (payload or output)")
    run = visible_run(session, auth, run_id, api_applier())
    if auth.is_public:  # public tokens see neither payload nor output
        raise PacketNotFound()
    return JSONResponse({"presignedUrl": packet_url(request, run, field)})


@router.put(OBJECT_ROUTE + "/{environment_id}/{path:path}", summary="Upload a packet",
            include_in_schema=False)
async def upload_packet(environment_id: str, path: str, expires: int, signature: str,
                        request: Request, session: DbSession) -> Response:
    check_object_url("PUT", environment_id, path, expires, signature)
    data = await request.body()
    content_type = request.headers.get("content-type")
    await run_in_threadpool(store_packet, session, environment_id, path, data, content_type)
    return Response(status_code=200)


@router.get(OBJECT_ROUTE + "/{environment_id}/{path:path}", summary="Download a packet",
            include_in_schema=False)
def download_packet(environment_id: str, path: str, expires: int, signature: str,
                    session: DbSession) -> Response:
    check_object_url("GET", environment_id, path, expires, signature)
    packet = load_packet(session, environment_id, path)
    return Response(packet.data, media_type=packet.content_type)


@router.get("/api/v1/run-packets/{run_id}/{kind}", summary="Download a run's payload or output",
            include_in_schema=False)
def download_run_packet(run_id: str, kind: str, expires: int, signature: str,
                        session: DbSession) -> Response:
    if kind not in ("payload", "output") or not verify_packet(run_id, kind, expires, signature):
        raise PacketNotFound()
    packet_kind: Literal["payload", "output"] = "payload" if kind == "payload" else "output"
    run, value = read_packet(session, run_id, packet_kind)
    if packet_kind == "payload" and run.payload_type == STORE and isinstance(value, str):
        packet = load_packet(session, run.environment_id, value)
        return Response(packet.data, media_type=packet.content_type)
    return JSONResponse(value)
