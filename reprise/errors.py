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


# --- durable execution (raised inside a task, by ``ctx.step`` and the waits) ---------------


class NonDeterminismError(RuntimeError):
    """The task no longer calls the steps and waits its run recorded, in the same order: a
    resumed (or replayed) execution reached a call the record has something else for. The
    run fails (not retried): the code changed under a run in flight, or it chooses its
    steps from something that is not recorded (the clock, randomness, a fresh read)."""


class StepFailed(RuntimeError):
    """A step's recorded error, raised again when an execution replays the record (the
    original exception's type is ``error_name``; its message and traceback are here)."""

    def __init__(self, step: str, error: Mapping[str, object]) -> None:
        self.step = step
        self.error_name = str(error.get("name") or "Error")
        self.error_message = str(error.get("message") or "")
        self.stack_trace = str(error.get("stackTrace") or "")
        super().__init__(f"step {step!r} failed: {self.error_name}: {self.error_message}")


class ChildRunFailed(RuntimeError):
    """``ctx.trigger_and_wait``: the child run did not complete. ``status`` is how it
    ended (FAILED, CANCELED, CRASHED, …) and ``error`` its error (``{"name", "message"}``)."""

    def __init__(self, run_id: str, status: str, error: Mapping[str, object] | None) -> None:
        self.run_id = run_id
        self.status = status
        self.error = dict(error or {})
        detail = f": {self.error.get('name', 'Error')}: {self.error.get('message', '')}" if error else ""
        super().__init__(f"child run {run_id} ended {status}{detail}")


class WaitTimeoutError(TimeoutError):
    """``ctx.wait_for_token``: the token timed out (its own timeout, or the wait's)
    before anyone completed it."""

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(f"waitpoint token {token_id} timed out")
