"""One domain error hierarchy; each error carries the HTTP status the API renders."""

from __future__ import annotations


class RepriseError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(RepriseError):
    """A value the request cannot use: 400, as Trigger.dev answers (the official SDK raises
    BadRequestError for it; a 422 would be its UnprocessableEntityError)."""

    status_code = 400


class Unprocessable(RepriseError):
    """Well-formed but refused by a limit where Trigger.dev answers 422 (a run's tag limit
    on ``POST /api/v1/runs/{id}/tags``)."""

    status_code = 422


class BadRequest(RepriseError):
    status_code = 400


class Unauthorized(RepriseError):
    status_code = 401

    def __init__(self, message: str = "Invalid or Missing API key") -> None:
        super().__init__(message)


class Forbidden(RepriseError):
    status_code = 403


class NotFound(RepriseError):
    status_code = 404


class RunNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Run not found")


class InvalidRunId(BadRequest):
    def __init__(self) -> None:
        super().__init__("Invalid or missing run ID")


class Conflict(RepriseError):
    status_code = 409


class ServiceUnavailable(RepriseError):
    status_code = 503


class LengthRequired(RepriseError):
    status_code = 411


class TooLarge(RepriseError):
    """A body over a route's own limit (the server-wide one is the api's middleware)."""

    status_code = 413
