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
