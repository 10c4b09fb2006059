"""Schedules on real processes: two ``reprise beat`` at once (which a deployment may
start by accident) and a ``reprise control`` that runs their sweeps still give one run per tick."""

from __future__ import annotations

from pathlib import Path

import pytest

from reprise_server.shared import broker
from reprise_server.workers.app import app
from tests.support.fixtures import wait_for
from tests.support.processes import reprise_process
from tests.support.schedules import Scheduler, clean_schedules, scheduler

__all__ = ["clean_schedules", "scheduler"]


def test_beat_sends_the_schedule_sweep_to_the_control_queues() -> None:
    by_task = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert broker.FIRE_DUE_SCHEDULES in by_task
    assert app.amqp.router.route({}, broker.FIRE_DUE_SCHEDULES)["queue"].name.endswith(".sweeps")


@pytest.mark.slow
def test_two_beats_give_one_run_per_tick(
    scheduler: Scheduler, own_queues: str, tmp_path: Path
) -> None:
    env = {"REPRISE_QUEUE_PREFIX": own_queues, "REPRISE_LIVENESS_DIR": str(tmp_path)}
    sid = scheduler.create("*/3 * * * * *")
    control = reprise_process("control", env=env)
    first = reprise_process("beat", "--schedule", str(tmp_path / "beat-1"), env=env)
    second = reprise_process("beat", "--schedule", str(tmp_path / "beat-2"), env=env)
    with control as ctl, first as beat_1, second as beat_2:

        def ticks() -> bool:
            for process in (ctl, beat_1, beat_2):
                assert process.alive(), process.log()
            return len(scheduler.runs(sid)) >= 3

        wait_for(ticks, timeout=60, interval=0.2, what="three ticks")
    found = [tick for _, tick, _ in scheduler.runs(sid)]
    assert len(found) == len(set(found))  # never two runs for one tick
    assert all(tick.second % 3 == 0 and tick.microsecond == 0 for tick in found)
