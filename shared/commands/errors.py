"""Errors of commands, with the exact messages of the error table in docs/api.md#errors."""

from __future__ import annotations

from reprise_server.shared.errors import BadRequest, NotFound


class InvalidRequestBody(BadRequest):
    """The body is missing, not JSON, or not of the route's shape. The message is the one
    clients match on; ``detail`` says what was wrong (for logs)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("Invalid request body")
        self.detail = detail


class InvalidDelay(BadRequest):
    def __init__(self, value: object) -> None:
        super().__init__(f"Invalid delay: {value}")


class RunNotDelayed(BadRequest):
    def __init__(self) -> None:
        super().__init__("Cannot reschedule a run that is not delayed")


class ReplayFailed(BadRequest):
    """The replay cannot be created. The message is the one clients match on; ``detail``
    says why (it is logged and, when a worker rejects the command, stored as its reason)."""

    def __init__(self, detail: str) -> None:
        super().__init__("Failed to create new run")
        self.detail = detail


class EnvironmentNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Environment not found")


class CheckpointNotFound(NotFound):
    def __init__(self, run_id: str, number: int) -> None:
        super().__init__(f"Checkpoint {number} not found for run {run_id}")


class CommandNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Command not found")
