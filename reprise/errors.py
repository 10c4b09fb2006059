"""Exceptions the SDK raises: one per kind of failure, each carrying the HTTP status."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """The API answered with an error (``status``, and the ``{"error"}`` message).

    ``status`` is ``None`` only for :class:`ApiConnectionError`, when no answer came at all.
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.body = body

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.message} (HTTP {self.status})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class AuthenticationError(ApiError):
    """401: the secret key is missing, unknown or revoked."""


class NotFoundError(ApiError):
    """404: no such run or task in the key's environment."""


class BadRequestError(ApiError):
    """400 or 422: the request was refused as invalid (the message names why)."""


class ServerError(ApiError):
    """5xx after the client's retries were exhausted."""


class ApiConnectionError(ApiError):
    """The API could not be reached (after retries): connection refused, timeout, reset."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class UnsendableValueError(ValueError):
    """A request carries a value JSON cannot: NaN or ±Infinity (what a missing pandas value
    becomes), or a string with a lone surrogate. Raised before anything is sent; the
    message names where (``payload.rows[3].price is NaN, …``)."""


class RunPollTimeoutError(TimeoutError):
    """:meth:`reprise.runs.poll` gave up: the run was not final after ``timeout`` seconds.
    ``run`` is the run as last read (``run.status`` is where it was)."""

    def __init__(self, run_id: str, timeout: float, run: object = None) -> None:
        status = getattr(run, "status", None)
        super().__init__(
            f"run {run_id} was not final after {timeout:g}s"
            + (f" (still {status})" if status else "")
        )
        self.run_id = run_id
        self.timeout = timeout
        self.run = run


def error_for(
    status: int, message: str, headers: Mapping[str, str] | None = None, body: object = None
) -> ApiError:
    """The exception class that matches ``status``."""
    kind: type[ApiError] = ApiError
    if status == 401:
        kind = AuthenticationError
    elif status == 404:
        kind = NotFoundError
    elif status in (400, 422):
        kind = BadRequestError
    elif status >= 500:
        kind = ServerError
    return kind(status, message, headers=headers, body=body)
