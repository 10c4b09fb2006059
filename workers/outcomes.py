"""How a run's execution ends as a Celery task: in failure when the run did."""

from __future__ import annotations

# Longest error text carried into Flower (the run's full error is in Postgres).
RUN_FAILED_MAX_CHARS = 300


class RunFailed(Exception):
    """Raised by ``reprise.execute_run`` after the run's failure is committed, so that
    Celery (and Flower, which counts its task events) records the execution as FAILURE.

    It is *expected*: listed in the task's ``throws`` (the worker logs one INFO line, no
    traceback) and ``dont_autoretry_for`` (Celery never retries it; Reprise's own attempts
    are the retries). Under ``acks_late`` a failed task's message is acknowledged
    (``acks_on_failure``, set on the task; Celery's default too): nothing is
    redelivered. One argument, one line: it pickles across the prefork pool and its repr
    is what Flower shows as the exception.
    """

    @classmethod
    def of(cls, run_id: str, status: str, error: str) -> RunFailed:
        line = " ".join(error.split())
        if len(line) > RUN_FAILED_MAX_CHARS:
            line = line[: RUN_FAILED_MAX_CHARS - 1] + "…"
        return cls(f"run {run_id} {status}: {line}")
