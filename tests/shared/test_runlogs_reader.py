"""Reading a run's captured lines: after a cursor, by minimum level, by text."""

from __future__ import annotations

import pytest

from tests.support import triggers
from tests.support.fixtures import ProjectKeys
from tests.support.runlogs import add_line


def test_lines_by_cursor_level_and_text(project: ProjectKeys) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.runlogs.reader import read_logs

    run_id = triggers.in_db(project, delay="1h", publish=False)
    seqs = [add_line(run_id, "loading 100% of rows", level="DEBUG"),
            add_line(run_id, "hello world"),
            add_line(run_id, "disk low", level="WARNING"),
            add_line(run_id, "failed", level="ERROR", exception="Traceback\nKeyError: 'user_id'")]

    with transaction() as session:
        assert [line.seq for line in read_logs(session, run_id).lines] == seqs
        page = read_logs(session, run_id, after=seqs[1], limit=1)
        assert ([line.message for line in page.lines], page.after, page.has_more) == (
            ["disk low"], seqs[2], True)
        tail = read_logs(session, run_id, after=seqs[3])
        assert (tail.lines, tail.after, tail.has_more) == ([], seqs[3], False)
        assert [line.message for line in read_logs(session, run_id, level="warn").lines] == [
            "disk low", "failed"]
        assert [line.message for line in read_logs(session, run_id, search="WORLD").lines] == [
            "hello world"]
        # In the traceback too; LIKE's wildcards are plain characters.
        assert [line.message for line in read_logs(session, run_id, search="user_id").lines] == [
            "failed"]
        assert [line.message for line in read_logs(session, run_id, search="100%").lines] == [
            "loading 100% of rows"]
        assert read_logs(session, run_id, search="1_0").lines == []
        with pytest.raises(ValueError, match="level must be one of"):
            read_logs(session, run_id, level="LOUD")


def test_a_failed_attempts_error_is_placed_after_that_attempts_lines() -> None:
    from datetime import UTC, datetime

    from reprise_server.shared.runlogs.models import RunLog
    from reprise_server.shared.runlogs.reader import (
        AttemptError,
        attempt_errors,
        with_attempt_errors,
    )
    from reprise_server.shared.runs.models import Attempt
    from reprise_server.shared.runs.states import AttemptStatus

    now = datetime.now(UTC)
    attempts = [
        Attempt(number=1, status=AttemptStatus.FAILED, completed_at=now,
                error={"name": "KeyError", "message": "'user_id'",
                       "stackTrace": "Traceback\n  in charge\nKeyError: 'user_id'"}),
        Attempt(number=2, status=AttemptStatus.FAILED, completed_at=now,
                error={"name": "", "message": "worker lost"}),
        Attempt(number=3, status=AttemptStatus.COMPLETED, completed_at=now),
    ]
    errors = attempt_errors(attempts)
    assert [(e.attempt_number, e.level, e.text, e.stack_trace) for e in errors] == [
        (1, "ERROR", "KeyError: 'user_id'", "Traceback\n  in charge\nKeyError: 'user_id'"),
        (2, "ERROR", "worker lost", None),
    ]
    # Kept by the lines' filter: ERROR's level, the text of the error or its stack trace.
    assert attempt_errors(attempts, level="CRITICAL") == []
    assert [e.attempt_number for e in attempt_errors(attempts, level="warn")] == [1, 2]
    assert [e.attempt_number for e in attempt_errors(attempts, search="IN CHARGE")] == [1]
    assert [e.attempt_number for e in attempt_errors(attempts, search="lost")] == [2]
    with pytest.raises(ValueError, match="level must be one of"):
        attempt_errors(attempts, level="LOUD")

    def line(attempt: int, message: str) -> RunLog:
        return RunLog(attempt_number=attempt, message=message, level="INFO", logged_at=now)

    lines = [line(1, "a"), line(1, "b"), line(3, "c")]

    def shown(entries: list[RunLog | AttemptError]) -> list[str]:
        return [e.message if isinstance(e, RunLog) else f"error {e.attempt_number}"
                for e in entries]

    # Attempt 2 logged nothing: both errors go before attempt 3's first line.
    assert shown(with_attempt_errors(lines, errors, complete=True)) == [
        "a", "b", "error 1", "error 2", "c"]
    # Lines of the last failed attempt: its error is last once every line is read...
    assert shown(with_attempt_errors(lines[:2], errors, complete=True)) == [
        "a", "b", "error 1", "error 2"]
    # ...and left for a later page while more lines follow.
    assert shown(with_attempt_errors(lines[:2], errors, complete=False)) == ["a", "b"]
    assert shown(with_attempt_errors([], errors, complete=True)) == ["error 1", "error 2"]
