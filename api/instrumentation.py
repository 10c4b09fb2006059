"""Request latency by route template, for ``reprise_http_request_duration_seconds``.

Labelled by the matched route's template (``/api/v3/runs/{runId}``), never the raw path,
so run ids do not become label values; requests that match no route share one label.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reprise_server.shared import metrics

UNMATCHED = "<unmatched>"


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router records the matched route in the scope it was given (ours).
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            metrics.observe_request(scope["method"], route, status, time.perf_counter() - began)
