"""Commands are applied exactly once in effect: redelivery, concurrent appliers, a worker
killed mid-apply, a message lost from Redis, and the relay sweep."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from reprise_server.shared.access.service import authenticate_for_run
from reprise_server.shared.commands import repository, service
from reprise_server.shared.commands.models import Command
from reprise_server.shared.commands.schemas import ReplayRequest
from reprise_server.shared.db import session_factory, transaction
from reprise_server.shared.projects.models import Environment
from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.states import RunStatus
from tests.support import triggers
from tests.support.commands import (
    ParkedCommands,
    command_row,
    held,
    replays_of,
)
from tests.support.fixtures import ProjectKeys, lock_waiters, run_row, wait_for, wait_for_status
from tests.support.timers import InThread


def _accept(project: ProjectKeys, run_id: str, **body: Any) -> tuple[str, str]:
    with transaction() as session:
        auth, run = authenticate_for_run(session, project.keys["dev"], run_id)
        command = service.accept_replay(
            session, auth, run, ReplayRequest.model_validate(body), publish=False
        )
        return command.id, command.target_run_id


def _apply(command_id: str, applier: str) -> Any:
    with transaction() as session:
        return service.apply_command(session, command_id, applier)


def test_applying_a_command_twice_creates_one_run(api: Any, project: ProjectKeys) -> None:
    source = triggers.via_api(api, project, delay="1h")
    command_id, new_id = _accept(project, source)

    first = _apply(command_id, "worker-1")
    second = _apply(command_id, "worker-2")

    assert first.status == second.status == "APPLIED"
    assert second.applied_by == "worker-1"
    assert second.applied_at == first.applied_at
    assert first.result == {"runId": new_id, "status": "QUEUED"}
    assert replays_of(source) == 1
    new_run = run_row(new_id)
    assert new_run.replayed_from == source
    assert new_run.lineage_depth == 1


def test_two_workers_applying_at_once_have_one_effect(api: Any, project: ProjectKeys) -> None:
    source = triggers.via_api(api, project)
    command_id, new_id = _accept(project, source)

    with held(lambda session: service.apply_command(session, command_id, "worker-1")) as first:
        second = InThread(lambda: _apply(command_id, "worker-2"))
        # The second applier is blocked on the command row the first one holds.
        wait_for(lambda: lock_waiters() >= 1, what="the second applier to wait for the lock")

    assert first.status == "APPLIED"
    assert second.result().status == "APPLIED"
    assert second.result().applied_by == "worker-1"
    assert replays_of(source) == 1
    assert run_row(new_id) is not None


def test_a_worker_killed_mid_apply_loses_nothing(api: Any, project: ProjectKeys) -> None:
    source = triggers.via_api(api, project)
    command_id, new_id = _accept(project, source)

    doomed = session_factory()()
    applied = service.apply_command(doomed, command_id, "doomed-worker")
    assert applied is not None
    assert applied.status == "APPLIED"  # not committed yet
    pid = doomed.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with transaction() as session:
        session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with contextlib.suppress(OperationalError):
        doomed.close()  # the connection is gone: its transaction was rolled back

    assert command_row(command_id).status == "PENDING"
    assert run_row(new_id) is None
    redelivered = _apply(command_id, "worker-2")
    assert redelivered.status == "APPLIED"
    assert redelivered.applied_by == "worker-2"
    assert replays_of(source) == 1


def test_a_rejected_command_records_why_and_creates_nothing(
    api: Any, project: ProjectKeys
) -> None:
    source = triggers.via_api(api, project, "test-checkpoints", delay="1h")  # never executes here
    with transaction() as session:
        session.execute(
            text("INSERT INTO checkpoints (run_id, number, state, attempt_number) "
                 "VALUES (:id, 1, '{\"step\": 1}', 1)"),
            {"id": source},
        )
        auth, run = authenticate_for_run(session, project.keys["dev"], source)
        command = service.accept_replay(
            session, auth, run, ReplayRequest(), checkpoint=1, publish=False
        )
        command_id, new_id = command.id, command.target_run_id
    with transaction() as session:
        session.execute(text("DELETE FROM checkpoints WHERE run_id = :id"), {"id": source})

    rejected = _apply(command_id, "worker-1")

    assert rejected.status == "REJECTED"
    assert "checkpoint 1" in rejected.reason
    assert run_row(new_id) is None
    assert _apply(command_id, "worker-2").status == "REJECTED"


def test_applying_an_unknown_command_does_nothing(project: ProjectKeys) -> None:
    assert _apply("cmd_doesnotexist", "worker-1") is None


def test_a_pending_command_of_another_kind_is_rejected(api: Any, project: ProjectKeys) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    before = run_row(run_id)
    with transaction() as session:  # the API never leaves a reschedule pending
        session.execute(
            text("INSERT INTO commands (id, kind, status, environment_id, run_id, "
                 "target_run_id, target_environment_id, arguments, publish_count) VALUES "
                 "('cmd_left_pending', 'reschedule', 'PENDING', :env, :run, :run, :env, "
                 "'{\"delayedUntil\": \"2030-01-01T00:00:00Z\"}', 0)"),
            {"env": project.environment_ids["dev"], "run": run_id},
        )

    rejected = _apply("cmd_left_pending", "worker-1")

    assert (rejected.status, rejected.reason) == ("REJECTED", "unknown command kind 'reschedule'")
    after = run_row(run_id)
    assert (after.delayed_until, after.schedule_token) == (
        before.delayed_until, before.schedule_token)


def test_relay_republishes_stale_commands_once_per_interval(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    source = triggers.via_api(api, project)
    response = api.post(f"/api/v1/runs/{source}/replay", headers=project.headers())
    new_id = response.json()["id"]
    command_id = command_row_for(new_id)
    assert parked_commands.command_ids() == [command_id]

    with transaction() as session:
        assert service.relay_pending_commands(session) == 0  # published just now
    _age_publication(command_id)
    with transaction() as session:
        assert service.relay_pending_commands(session) == 1
    with transaction() as session:
        assert service.relay_pending_commands(session) == 0  # a second beat, same interval

    assert parked_commands.command_ids() == [command_id, command_id]
    assert command_row(command_id).publish_count == 2


def test_relay_leaves_a_backlog_alone_while_the_queue_still_holds_messages(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    """A backlog of commands waiting in their queue is not a loss: republishing them each
    interval multiplied the messages (200 replays published 744 times)."""
    from reprise_server.workers import sweeps

    source = triggers.via_api(api, project)
    new_id = api.post(f"/api/v1/runs/{source}/replay", headers=project.headers()).json()["id"]
    command_id = command_row_for(new_id)
    _age_publication(command_id)

    with transaction() as session:
        assert service.relay_pending_commands(session, queued_messages=1) == 0
    assert command_row(command_id).publish_count == 1
    # The sweep itself reads the queue's length from Redis: the parked queue is not the
    # commands queue, so it finds that queue empty and the message possibly lost.
    assert sweeps.relay_pending_commands() == {"relayed": 1}
    assert command_row(command_id).publish_count == 2


def test_a_second_sweep_skips_commands_the_first_is_relaying(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands
) -> None:
    source = triggers.via_api(api, project)
    new_id = api.post(f"/api/v1/runs/{source}/replay", headers=project.headers()).json()["id"]
    command_id = command_row_for(new_id)
    _age_publication(command_id)

    with transaction() as first:
        assert service.relay_pending_commands(first) == 1
        with transaction() as second:
            assert service.relay_pending_commands(second) == 0  # locked: skipped, no wait
    assert command_row(command_id).publish_count == 2


def test_a_command_whose_message_redis_lost_is_still_applied(
    api: Any, project: ProjectKeys, parked_commands: ParkedCommands, celery_worker: Any
) -> None:
    source = triggers.via_api(api, project)
    new_id = api.post(f"/api/v1/runs/{source}/replay", headers=project.headers()).json()["id"]
    command_id = command_row_for(new_id)
    assert parked_commands.command_ids() == [command_id]
    assert parked_commands.delete_all() == 1  # Redis lost the message
    _age_publication(command_id)

    parked_commands.unpark()  # the relay publishes to the commands queue workers consume
    with transaction() as session:
        assert service.relay_pending_commands(session) == 1

    wait_for(lambda: command_row(command_id).status == "APPLIED", what="the relayed command")
    assert not command_row(command_id).applied_by.startswith("api:")
    wait_for_status(new_id, "COMPLETED")
    assert replays_of(source) == 1


def _age_publication(command_id: str) -> None:
    with transaction() as session:
        session.execute(
            text("UPDATE commands SET published_at = now() - interval '1 minute' WHERE id = :id"),
            {"id": command_id},
        )


def command_row_for(target_run_id: str) -> str:
    from tests.support.commands import command_for_target

    return str(command_for_target(target_run_id).id)


def test_a_replay_left_pending_by_the_previous_code_still_applies(
    api: Any, project: ProjectKeys
) -> None:
    """Commands can be pending during a deploy: the overrides the previous code stored
    (keyed as the trigger's options, the delay already a date) apply as they were meant."""
    source = triggers.via_api(api, project, delay="1h", payload={"x": 1})
    overrides = {
        "tags": ["solo"], "maxAttempts": 4, "queue": {"name": "emails"}, "ttl": "1m",
        "priority": 7, "delay": "2099-01-01T00:00:00.000Z", "payload": {"x": 2},
        "payloadType": "application/json",
    }
    with transaction() as session:
        session.execute(
            text("INSERT INTO commands (id, kind, status, environment_id, run_id, "
                 "target_run_id, target_environment_id, arguments, publish_count) VALUES "
                 "('cmd_from_before', 'replay', 'PENDING', :env, :run, 'run_frombefore00000001', "
                 ":env, CAST(:arguments AS jsonb), 1)"),
            {"env": project.environment_ids["dev"], "run": source,
             "arguments": json.dumps({"overrides": overrides})},
        )

    applied = _apply("cmd_from_before", "worker-1")

    assert (applied.status, applied.reason) == ("APPLIED", None)
    new_run = run_row("run_frombefore00000001")
    assert (new_run.status, new_run.payload, new_run.tags) == ("DELAYED", {"x": 2}, ["solo"])
    assert (new_run.max_attempts, new_run.queue, new_run.ttl_seconds, new_run.priority) == (
        4, "emails", 60, 7)
    assert new_run.delayed_until.year == 2099
    assert new_run.replayed_from == source


def _apply_together(command_ids: list[str], applier: str) -> list[str]:
    with transaction() as session:
        return service.apply_commands(session, command_ids, applier)


def test_commands_applied_together_each_have_one_effect(api: Any, project: ProjectKeys) -> None:
    sources = [triggers.via_api(api, project, delay="1h") for _ in range(3)]
    accepted = [_accept(project, source) for source in sources]
    ids = [command_id for command_id, _ in accepted]
    assert _apply(ids[0], "worker-1").status == "APPLIED"  # one decided before the batch

    assert _apply_together([*ids, "cmd_doesnotexist"], "worker-2") == []
    # A redelivered batch finds nothing left to do.
    assert _apply_together(ids, "worker-3") == []

    rows = [command_row(command_id) for command_id in ids]
    assert [row.status for row in rows] == ["APPLIED"] * 3
    assert [row.applied_by for row in rows] == ["worker-1", "worker-2", "worker-2"]
    for source, (_, new_id) in zip(sources, accepted, strict=True):
        assert replays_of(source) == 1
        assert run_row(new_id).replayed_from == source


def test_a_batch_skips_a_command_another_transaction_holds(
    api: Any, project: ProjectKeys
) -> None:
    sources = [triggers.via_api(api, project, delay="1h") for _ in range(2)]
    (held_id, held_new), (free_id, free_new) = (_accept(project, s) for s in sources)

    with held(lambda session: service.apply_command(session, held_id, "reader")):
        # Not waited for: the batch decides the other and hands this one back.
        assert _apply_together([held_id, free_id], "control") == [held_id]
        assert command_row(free_id).status == "APPLIED"
    # Applied alone afterwards, it finds the holder's outcome.
    assert _apply(held_id, "control").applied_by == "reader"
    assert replays_of(sources[0]) == replays_of(sources[1]) == 1
    assert run_row(held_new) is not None
    assert run_row(free_new) is not None


def test_a_batch_locks_copies_equal_to_what_the_orm_loads(
    api: Any, project: ProjectKeys
) -> None:
    """The batch locks its commands below SQLAlchemy: each command, source run and target
    environment it hands the appliers must be what the ORM would have loaded, value for
    value and type for type; a source run deleted meanwhile comes back as None."""
    sources = [triggers.via_api(api, project, delay="1h", tags=["a"], metadata={"k": [1]})
               for _ in range(2)]
    (kept_id, _), (gone_id, _) = (_accept(project, source) for source in sources)
    with transaction() as session:
        session.execute(text("DELETE FROM runs WHERE id = :id"), {"id": sources[1]})
    with transaction() as session:
        locked = repository.lock_pending_commands(session, [gone_id, kept_id])
        assert [found.command.id for found in locked] == sorted([kept_id, gone_id])
        by_id = {found.command.id: found for found in locked}
        assert by_id[gone_id].source is None
        kept = by_id[kept_id]
        assert all(copy not in session for copy in kept)
        for copy, model, key in [(kept.command, Command, kept_id),
                                 (kept.source, Run, sources[0]),
                                 (kept.environment, Environment, kept.command.target_environment_id)]:
            loaded = session.get(model, key)
            for attribute in inspect(model).column_attrs:
                value, expected = getattr(copy, attribute.key), getattr(loaded, attribute.key)
                assert (value, type(value)) == (expected, type(expected)), attribute.key
        assert kept.source is not None
        assert isinstance(kept.source.status, RunStatus)


def test_a_rejected_command_in_a_batch_leaves_the_others_applied(
    api: Any, project: ProjectKeys
) -> None:
    good = triggers.via_api(api, project, delay="1h")
    bad = triggers.via_api(api, project, "test-checkpoints", delay="1h")
    with transaction() as session:
        session.execute(
            text("INSERT INTO checkpoints (run_id, number, state, attempt_number) "
                 "VALUES (:id, 1, '{}', 1)"), {"id": bad})
        auth, run = authenticate_for_run(session, project.keys["dev"], bad)
        bad_id = service.accept_replay(session, auth, run, ReplayRequest(), checkpoint=1,
                                       publish=False).id
    with transaction() as session:
        session.execute(text("DELETE FROM checkpoints WHERE run_id = :id"), {"id": bad})
    good_id, good_new = _accept(project, good)

    assert _apply_together([bad_id, good_id], "control") == []

    assert command_row(bad_id).status == "REJECTED"
    assert command_row(good_id).status == "APPLIED"
    assert run_row(good_new) is not None
    assert replays_of(bad) == 0


def test_a_batch_that_fails_is_applied_one_by_one(
    api: Any, project: ProjectKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprise_server.shared.commands import replay
    from reprise_server.shared.commands.appliers import register_applier
    from reprise_server.shared.commands.models import CommandKind
    from reprise_server.workers import command_tasks

    sources = [triggers.via_api(api, project, delay="1h") for _ in range(2)]
    (bad_id, _), (good_id, good_new) = (_accept(project, s) for s in sources)

    def fails_for_one(session: Any, locked: Any, applier: str) -> Any:
        if locked.command.id == bad_id:  # an error no applier foresees: not a rejection
            raise RuntimeError("injected")
        return replay.apply_replay(session, locked, applier)

    register_applier(CommandKind.REPLAY, fails_for_one)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            command_tasks.apply_commands([bad_id, good_id])
    finally:
        register_applier(CommandKind.REPLAY, replay.apply_replay)

    # The batch was rolled back, then each applied alone: only the bad one is left pending.
    assert command_row(good_id).status == "APPLIED"
    assert run_row(good_new) is not None
    assert command_row(bad_id).status == "PENDING"
    command_tasks.apply_commands([bad_id, good_id])  # the relay's message, once mended
    assert command_row(bad_id).status == "APPLIED"
    assert replays_of(sources[0]) == replays_of(sources[1]) == 1
