"""The environment's current worker version, read by every trigger (the creation context,
also inside the guarded run INSERT), is one index entry away however many versions the
environment registered before it."""

from __future__ import annotations

from reprise_server.shared.db import get_engine
from reprise_server.shared.projects.catalogue import CREATION_CONTEXT
from tests.support.fixtures import ProjectKeys
from tests.support.timers import explain_analyze, sql


def test_the_creation_context_reads_one_version_of_many(project: ProjectKeys) -> None:
    env = project.environment_ids["dev"]
    sql("INSERT INTO worker_versions (id, environment_id, version, registered_at) "
        "SELECT md5(:env || g), :env, 'old.' || g, now() - g * interval '1 minute' "
        "FROM generate_series(1, 2000) g", env=env)
    sql("ANALYZE worker_versions")
    compiled = CREATION_CONTEXT.compile(dialect=get_engine().dialect)
    params = {**compiled.params, "environment_id": env, "task_identifier": "test-echo"}
    plan = explain_analyze(str(compiled), params)
    # The newest version straight from the index: one row read, nothing sorted.
    [scan] = [line for line in plan.splitlines() if " on worker_versions " in line]
    assert "Index Scan using ix_worker_versions_env_registered" in scan, plan
    assert "rows=1" in scan, plan
    assert "registered_at" not in plan.split(scan)[0], plan  # no Sort Key above it
