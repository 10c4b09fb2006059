"""A control process lets go of a promotion timer once a newer one for the same run arrives
(workers/held_timers.py): a reschedule storm leaves it holding one timer per run, and the
newest timer still promotes.

The bookkeeping is tested alone; the strategy against a real ``reprise control`` on a queue
prefix of the test's own, counting the timer messages it holds unacknowledged in Redis.
"""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from kombu.asynchronous.timer import Timer

from reprise_server.workers.held_timers import HeldTimers, _compact, timer_of
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, run_row, wait_for
from tests.support.processes import reprise_process
from tests.support.timers import held_timer_tokens


class _Request:
    """Stands for a Celery request (held weakly, like one)."""


def test_a_newer_token_supersedes_the_held_timer_and_an_older_one_supersedes_nothing() -> None:
    held = HeldTimers()
    first, second, duplicate = _Request(), _Request(), _Request()

    assert held.hold("run_a", 3, first) is None
    assert held.newest_token("run_a") == 3
    assert held.hold("run_a", 5, second) is first
    assert held.hold("run_a", 5, duplicate) is None  # same token: both stay
    assert held.hold("run_a", 4, _Request()) is None  # older: never supersedes the newer
    assert held.newest_token("run_a") == 5
    assert held.hold("run_b", 1, first) is None  # runs are independent


def test_a_run_is_forgotten_once_its_held_timer_is_gone() -> None:
    held = HeldTimers()
    request = _Request()
    held.hold("run_a", 3, request)
    del request
    gc.collect()
    assert held.newest_token("run_a") is None
    assert len(held) == 0


def test_the_run_and_token_are_read_from_a_promotion_message() -> None:
    assert timer_of(SimpleNamespace(payload=[["run_a", 7], {}, {}])) == ("run_a", 7)
    assert timer_of(SimpleNamespace(payload=[["run_a"], {}, {}])) is None
    assert timer_of(SimpleNamespace(payload=[["run_a", "7"], {}, {}])) is None
    assert timer_of(SimpleNamespace(payload=None)) is None


def test_compacting_the_timer_drops_only_its_canceled_entries() -> None:
    timer = Timer()
    fired: list[int] = []
    entries = [timer.call_at(1000.0 + n, fired.append, (n,)) for n in range(4)]
    timer.cancel(entries[1])
    _compact(timer)
    assert len(timer) == 3
    assert [item[2] for item in timer._queue if item[2] is entries[1]] == []


def _held_timers(prefix: str, run_id: str) -> list[int]:
    return held_timer_tokens(run_id, prefix)


def _timers_waiting(prefix: str) -> int:
    import redis

    from reprise_server.shared.broker import queue_lengths
    from reprise_server.shared.settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url)
    try:
        return queue_lengths(client, [f"{prefix}.timers"])[f"{prefix}.timers"]
    finally:
        client.close()


def _reschedule(run_id: str, delay: timedelta) -> int:
    from reprise_server.shared.commands.reschedule import move_delayed_run
    from reprise_server.shared.db import db_now, transaction

    with transaction() as session:
        return move_delayed_run(session, run_id, delay, db_now(session)).schedule_token


def test_a_reschedule_storm_leaves_the_control_process_holding_only_the_newest_timer(
    project: ProjectKeys, own_queues: str, tmp_path: Path
) -> None:
    env = {"REPRISE_QUEUE_PREFIX": own_queues, "REPRISE_LIVENESS_DIR": str(tmp_path)}
    run_id = triggers.in_db(project, delay="1h")  # beyond the horizon: no timer yet
    with reprise_process("control", env=env) as control:
        tokens = [_reschedule(run_id, timedelta(minutes=4)) for _ in range(40)]

        def storm_taken() -> bool:
            assert control.alive(), control.log()
            return _timers_waiting(own_queues) == 0 and _held_timers(own_queues, run_id) == [
                tokens[-1]
            ]

        wait_for(storm_taken, timeout=30, what="the control process to hold only the newest")

        from reprise_server.shared import broker

        # An older timer arriving late is acknowledged as it arrives, never held: once the
        # newer timer published after it is the only one held, it was seen (the queue is
        # first in, first out) and is gone.
        broker.arm_timer_in(run_id, tokens[0], 240.0)
        newer = _reschedule(run_id, timedelta(minutes=4))
        wait_for(lambda: _held_timers(own_queues, run_id) == [newer], timeout=30,
                 what="only the newer timer held")

        last = _reschedule(run_id, timedelta(seconds=1))
        wait_for(lambda: run_row(run_id).status != "DELAYED", timeout=30,
                 what="the newest timer to promote the run")
        wait_for(lambda: _held_timers(own_queues, run_id) == [], timeout=10,
                 what="no timer of the run held any more")
    assert run_row(run_id).schedule_token == last + 1
