"""Errors of commands, with the exact messages of the error table in docs/api.md#errors."""

from __future__ import annotations

from reprise_server.shared.errors import BadRequest, NotFound


class InvalidRequestBody(BadRequest):
    """The body is missing, not JSON, or not of the route's shape: "Invalid request body"
    (the prefix clients match on), then what was wrong, naming the field."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"Invalid request body: {detail}" if detail else "Invalid request body")
        self.detail = detail


class InvalidDelay(BadRequest):
    def __init__(self, value: object) -> None:
        super().__init__(f"Invalid delay: {value}")


class RunNotDelayed(BadRequest):
    def __init__(self) -> None:
        super().__init__("Cannot reschedule a run that is not delayed")


class ReplayFailed(BadRequest):
    """The replay cannot be created. The message starts with the one clients match on
    ("Failed to create new run"); ``detail`` says why (it is logged and, when a worker
    rejects the command, stored as its reason). When a field of the request's body is at
    fault (``field``, as the wire spells it), the message names it and says why:
    "Failed to create new run: ttl: …"."""

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(f"Failed to create new run: {field}: {detail}" if field
                         else "Failed to create new run")
        self.detail = detail
        self.field = field


class EnvironmentNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Environment not found")


class CheckpointNotFound(NotFound):
    def __init__(self, run_id: str, number: int) -> None:
        super().__init__(f"Checkpoint {number} not found for run {run_id}")


class CommandNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Command not found")
