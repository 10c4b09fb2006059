"""``GET /metrics`` after real work: the series docs/operations.md lists, with real values.

The in-process worker shares this process's registry, so the api's ``/metrics`` shows
what it observed too (in production those series are on each worker's exporter).
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from reprise_server.shared.db import transaction
from tests.support import triggers
from tests.support.commands import ParkedCommands, backdate_delay
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Any) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(ls) for (n, ls) in samples if n == name]


def test_metrics_after_runs_commands_and_a_sweep(
    api: Any, project: ProjectKeys, celery_worker: Any, parked_commands: ParkedCommands
) -> None:
    from reprise_server.shared import broker

    before = scrape(api)
    done = [triggers.via_api(api, project, task="test-echo") for _ in range(3)]
    for run_id in done:
        wait_for_status(run_id, "COMPLETED")
    triggers.via_api(api, project, task="test-echo", delay="1h")
    overdue = triggers.via_api(api, project, task="test-echo", delay="1h")
    backdate_delay(overdue, seconds=2)
    # The promotion sweep, through the broker to the real worker, as beat would send it.
    broker.celery_app().send_task(broker.PROMOTE_DUE_RUNS)
    wait_for_status(overdue, "COMPLETED")
    # A replay accepted but not applied (its message is parked): a pending command.
    replay = api.post(f"/api/v1/runs/{done[0]}/replay", headers=project.headers())
    assert replay.status_code == 200, replay.text

    def sweep_counted() -> Samples | None:
        after = scrape(api)
        sweeps = value(after, "reprise_sweeps_total", sweep="promote_due_runs")
        return (
            after
            if sweeps > value(before, "reprise_sweeps_total", sweep="promote_due_runs")
            else None
        )

    after = wait_for(sweep_counted, timeout=10, what="the sweep to be counted")

    # Runs by status and task, per project and environment, from Postgres.
    mine = {"project": project.slug, "environment": "dev", "task": "test-echo"}
    assert value(after, "reprise_runs", status="COMPLETED", **mine) == 4
    assert value(after, "reprise_runs", status="DELAYED", **mine) == 1

    # Run state changes, counted as they commit.
    for status, at_least in (("QUEUED", 4), ("EXECUTING", 4), ("COMPLETED", 4), ("DELAYED", 2)):
        grown = value(
            after, "reprise_run_state_changes_total", status=status, task="test-echo"
        ) - value(before, "reprise_run_state_changes_total", status=status, task="test-echo")
        assert grown >= at_least, status

    # Commands pending and apply lag.
    assert value(after, "reprise_commands_pending", kind="replay") == 1
    assert value(after, "reprise_command_apply_lag_seconds", kind="replay") > 0
    assert value(after, "reprise_commands_pending", kind="reschedule") == 0

    # Promotion lateness (the sweep promoted a run 2 s overdue) and sweep duration/count.
    lateness = "reprise_promotion_lateness_seconds"
    assert value(after, f"{lateness}_count", path="sweep") > value(
        before, f"{lateness}_count", path="sweep"
    )
    assert value(after, f"{lateness}_sum", path="sweep") >= 2
    assert value(after, "reprise_sweep_duration_seconds_count", sweep="promote_due_runs") >= 1
    assert value(after, "reprise_sweep_duration_seconds_sum", sweep="promote_due_runs") > 0
    assert value(after, "reprise_sweep_items_total", sweep="promote_due_runs", item="promoted") >= 1

    # API latency by route template (never by raw path: run ids are not label values).
    trigger_route = {"method": "POST", "route": "/api/v1/tasks/{task_id}/trigger", "status": "200"}
    assert value(after, "reprise_http_request_duration_seconds_count", **trigger_route) >= 5
    assert value(after, "reprise_http_request_duration_seconds_sum", **trigger_route) > 0
    routes = {s["route"] for s in series(after, "reprise_http_request_duration_seconds_count")}
    assert "/api/v1/runs/{run_id}/replay" in routes
    assert not [r for r in routes if "run_" in r.replace("{run_id}", "")]

    # Queue lengths (every Celery queue, from Redis) and the stores' health.
    queues = {s["queue"] for s in series(after, "reprise_queue_length")}
    assert queues == set(broker.queue_names(_settings()).values())
    assert value(after, "reprise_store_up", store="postgres") == 1
    assert value(after, "reprise_store_up", store="redis") == 1


def _settings() -> Any:
    from reprise_server.shared.settings import get_settings

    return get_settings()


def test_unmatched_paths_share_one_route_label(api: Any) -> None:
    assert api.get("/no/such/run_abcdefghijklmnopqrstuv").status_code == 404
    routes = {
        s["route"] for s in series(scrape(api), "reprise_http_request_duration_seconds_count")
    }
    assert "<unmatched>" in routes
    assert not [r for r in routes if "abcdefghijklmnopqrstuv" in r]


def test_waiting_waitpoint_tokens_per_environment(api: Any, project: ProjectKeys) -> None:
    made = [api.post("/api/v1/waitpoints/tokens", json={}, headers=project.headers()).json()
            for _ in range(3)]
    api.post("/api/v1/waitpoints/tokens", json={}, headers=project.headers("prod"))
    completed = api.post(f"/api/v1/waitpoints/tokens/{made[0]['id']}/complete",
                         json={"data": 1}, headers=project.headers())
    assert completed.status_code == 200
    samples = scrape(api)
    name = "reprise_waitpoint_tokens_waiting"
    assert value(samples, name, project=project.slug, environment="dev") == 2
    assert value(samples, name, project=project.slug, environment="prod") == 1
    assert {"project": project.slug, "environment": "staging"} not in series(samples, name)


def test_realtime_listeners_count_the_registrations_alive(api: Any) -> None:
    with transaction() as session:
        session.execute(text("DELETE FROM realtime_listeners"))
        session.execute(text(
            "INSERT INTO realtime_listeners VALUES ('a', now() + interval '1 minute'), "
            "('b', now() + interval '1 minute'), ('gone', now() - interval '1 second')"
        ))
    assert value(scrape(api), "reprise_realtime_listeners") == 2
