"""The JSON bodies the API accepts, and the error a body of the wrong shape is
(docs/api.md#errors). A trigger's body is read with its caller
(:data:`api.deps.TaskTrigger`).

Malformed JSON is 400 "Invalid request body: not JSON: …" everywhere (see
:func:`api.deps.json_body`).
"""

from __future__ import annotations

from typing import Annotated

from reprise_server.api.deps import json_body
from reprise_server.shared.commands.errors import InvalidRequestBody
from reprise_server.shared.commands.schemas import ReplayRequest, RescheduleRequest

# 400 "Invalid request body: <why>"; no body replays the original as it was.
ReplayBody = Annotated[
    ReplayRequest, json_body(ReplayRequest, error=InvalidRequestBody, required=False)
]
# 400 "Invalid request body: <why>", also for no body or no string ``delay``.
RescheduleBody = Annotated[
    RescheduleRequest, json_body(RescheduleRequest, error=InvalidRequestBody)
]
