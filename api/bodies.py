"""The JSON bodies the API accepts, and the error a body of the wrong shape is
(docs/api.md#errors). A trigger's body is read with its caller
(:data:`api.deps.TaskTrigger`), a replay's and a reschedule's with their run id
(:func:`api.deps.run_write`).

Malformed JSON is 400 "Invalid request body: not JSON: …" everywhere (see
:func:`api.deps.json_body`).
"""

from __future__ import annotations

from typing import Annotated

from reprise_server.api.deps import RunWrite, run_write
from reprise_server.shared.commands.schemas import ReplayRequest, RescheduleRequest

# 400 "Invalid request body: <why>"; no body replays the original as it was.
ReplayCall = Annotated[RunWrite[ReplayRequest], run_write(ReplayRequest, required=False)]
# 400 "Invalid request body: <why>", also for no body or no string ``delay``.
RescheduleCall = Annotated[
    RunWrite[RescheduleRequest], run_write(RescheduleRequest, required=True)
]
