"""The run log writer against a real Postgres: lines are written in a few batches by the
writer's own thread, what Postgres cannot store is made storable, a line it still refuses
costs only itself, the per-run cap spans flushes and attempts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select

from reprise_server.shared.db import transaction
from reprise_server.shared.runlogs.models import RunLog
from reprise_server.shared.runlogs.writer import Flusher, LogLine, write_batch
from reprise_server.shared.settings import get_settings
from tests.support import triggers
from tests.support.fixtures import ProjectKeys
from tests.support.statements import captured_statements


def _line(run_id: str, env: str, message: str, attempt: int = 1, **fields: object) -> LogLine:
    return LogLine(run_id, env, attempt, datetime.now(UTC), "INFO", "app", message,
                   **fields)  # type: ignore[arg-type]


def _stored(run_id: str) -> list[RunLog]:
    with transaction() as session:
        rows = list(session.scalars(select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.seq)))
        session.expunge_all()
        return rows


def test_a_thousand_lines_are_written_in_a_few_batches_off_the_callers_thread(
    project: ProjectKeys,
) -> None:
    run_id = triggers.in_db(project, "logs-none", publish=False)
    env = project.environment_ids["dev"]
    batches: list[tuple[int, str, int | None]] = []

    def recording(lines: Sequence[LogLine], written: dict[str, int], max_lines: int) -> int:
        current = threading.current_thread()
        batches.append((len(lines), current.name, current.ident))
        return write_batch(lines, written, max_lines)  # the real COPY, one per batch

    settings = get_settings()  # the worker's own flush settings (500 lines or 200 ms)
    flusher = Flusher(settings.run_log_flush_lines, settings.run_log_flush_ms,
                      settings.run_log_max_lines, 5, write=recording)
    caller = threading.current_thread()
    with captured_statements() as statements:
        for n in range(1000):
            flusher.add(_line(run_id, env, f"line {n}"))
        assert flusher.flush(30)
    # Rows go in by COPY, never by an INSERT (the count of a run not yet known is a read).
    assert [sql for sql, _ in statements if "FROM run_logs" in sql]  # the writer's are seen
    assert not [sql for sql, _ in statements if "insert" in sql.lower()]

    assert sum(size for size, _, _ in batches) == 1000
    assert 1 <= len(batches) <= 1000 // settings.run_log_flush_lines + 2, batches
    assert {(name, ident) for _, name, ident in batches} == {("reprise-run-logs", batches[0][2])}
    assert batches[0][2] != caller.ident
    assert [row.message for row in _stored(run_id)] == [f"line {n}" for n in range(1000)]


def test_nul_characters_and_lone_surrogates_are_stored_replaced(project: ProjectKeys) -> None:
    run_id = triggers.in_db(project, "logs-none", publish=False)
    env = project.environment_ids["dev"]
    write_batch([
        _line(run_id, env, "a\x00b", attributes={"k": "v\x00"}, exception="tb\x00"),
        _line(run_id, env, "lone \udc80 surrogate"),
    ], {}, 100)
    first, second = _stored(run_id)
    assert first.message == "a\ufffdb"
    assert first.attributes == {"k": "v\ufffd"}
    assert first.exception == "tb\ufffd"
    assert second.message == "lone ? surrogate"


def test_a_line_postgres_refuses_is_dropped_alone(project: ProjectKeys) -> None:
    run_id = triggers.in_db(project, "logs-none", publish=False)
    env = project.environment_ids["dev"]
    flusher = Flusher(flush_lines=10, flush_ms=10_000, max_lines=100, retry_seconds=5)
    flusher.add(_line(run_id, env, "before"))
    # A NaN is not JSON: Postgres refuses the row (the capture never produces one).
    flusher.add(_line(run_id, env, "refused", attributes={"ratio": float("nan")}))
    flusher.add(_line(run_id, env, "after"))
    assert flusher.flush(10)
    assert [row.message for row in _stored(run_id)] == ["before", "after"]


def test_the_cap_counts_the_lines_of_earlier_flushes_and_attempts(project: ProjectKeys) -> None:
    run_id = triggers.in_db(project, "logs-none", publish=False)
    env = project.environment_ids["dev"]
    write_batch([_line(run_id, env, f"a{n}") for n in range(3)], {}, 5)
    # Another process (a later attempt) knows nothing of those: it reads the count.
    write_batch([_line(run_id, env, f"b{n}", attempt=2) for n in range(4)], {}, 5)
    write_batch([_line(run_id, env, "c", attempt=3)], {}, 5)
    rows = _stored(run_id)
    assert [r.message for r in rows[:5]] == ["a0", "a1", "a2", "b0", "b1"]
    assert len(rows) == 6
    assert rows[5].logger == "reprise"
    assert rows[5].attempt_number == 2
    assert rows[5].message.startswith("log truncated")
