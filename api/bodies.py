"""The JSON bodies the API accepts, and the error a body of the wrong shape is
(docs/api.md#errors).

Malformed JSON is 400 "Invalid request body" everywhere (see :func:`api.deps.json_body`).
"""

from __future__ import annotations

from typing import Annotated

from reprise_server.api.deps import json_body
from reprise_server.shared.commands.errors import InvalidRequestBody
from reprise_server.shared.commands.schemas import ReplayRequest, RescheduleRequest
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.runs.schemas import TriggerRequest

# 400 with a sentence naming the field; no body is a trigger with no payload or options.
TriggerBody = Annotated[
    TriggerRequest, json_body(TriggerRequest, error=InvalidInput, required=False)
]
# 400 "Invalid request body"; no body replays the original as it was.
ReplayBody = Annotated[
    ReplayRequest, json_body(ReplayRequest, error=InvalidRequestBody, required=False)
]
# 400 "Invalid request body", also for no body or no string ``delay``.
RescheduleBody = Annotated[
    RescheduleRequest, json_body(RescheduleRequest, error=InvalidRequestBody)
]
