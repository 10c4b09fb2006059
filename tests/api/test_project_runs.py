"""``GET /api/v1/projects/{ref}/runs`` (the SDK's ``runs.list(projectRef, …)``): a project's
ref, the run list through it, and the migration that gave existing projects theirs."""

from __future__ import annotations

import re
import secrets
from typing import Any

import psycopg
from sqlalchemy import select

from reprise_server.shared.db import transaction
from reprise_server.shared.migrations import upgrade
from reprise_server.shared.projects.models import Project
from reprise_server.shared.settings import get_settings, normalise_database_url
from tests.support import triggers
from tests.support.fixtures import ProjectKeys, new_project

REF = re.compile(r"proj_[0-9a-z]{20}")


def ref_of(project: ProjectKeys) -> str:
    with transaction() as session:
        ref = session.scalar(select(Project.ref).where(Project.id == project.project_id))
    assert ref is not None
    return str(ref)


def test_a_project_has_a_ref_of_trigger_devs_shape(project: ProjectKeys) -> None:
    assert REF.fullmatch(ref_of(project))


def test_the_project_run_list_is_the_run_list_through_the_ref(
    api: Any, project: ProjectKeys
) -> None:
    ids = [triggers.via_api(api, project, delay="1h") for _ in range(3)]
    ref = ref_of(project)
    params = {"filter[status]": "DELAYED", "filter[taskIdentifier]": "test-echo",
              "page[size]": "2"}
    plain = api.get("/api/v1/runs", params=params, headers=project.headers())
    by_ref = api.get(f"/api/v1/projects/{ref}/runs", params=params, headers=project.headers())
    assert by_ref.status_code == 200, by_ref.text
    assert by_ref.json() == plain.json()
    assert [run["id"] for run in by_ref.json()["data"]] == list(reversed(ids))[:2]
    # The SDK's `env` option: the key's own environment is accepted...
    same = api.get(f"/api/v1/projects/{ref}/runs", params={**params, "filter[env]": "dev"},
                   headers=project.headers())
    assert same.json() == plain.json()
    # ...another one is refused, never silently ignored.
    other = api.get(f"/api/v1/projects/{ref}/runs", params={"filter[env]": "dev,prod"},
                    headers=project.headers())
    assert (other.status_code, other.json()) == (400, {
        "error": "filter[env] names 'prod': this key lists the runs of its own environment "
                 "(dev) only"})
    # A filter the list cannot apply is the run list's 400.
    refused = api.get(f"/api/v1/projects/{ref}/runs", params={"filter[machine]": "micro"},
                      headers=project.headers())
    assert refused.status_code == 400


def test_another_projects_ref_is_404_and_a_bad_key_401(api: Any, project: ProjectKeys) -> None:
    for ref in ("proj_" + "0" * 20, "not-a-ref"):
        response = api.get(f"/api/v1/projects/{ref}/runs", headers=project.headers())
        assert (response.status_code, response.json()) == (404, {"error": "Project not found"})
    anonymous = api.get(f"/api/v1/projects/{ref_of(project)}/runs")
    assert anonymous.status_code == 401


def test_a_real_second_projects_ref_is_404_for_the_first_projects_key(
    api: Any, project: ProjectKeys
) -> None:
    second = new_project()
    theirs = triggers.via_api(api, second, delay="1h")
    mine = triggers.via_api(api, project, delay="1h")
    their_ref = ref_of(second)
    assert their_ref != ref_of(project)
    # Its own key lists its run through its ref: the ref is real...
    listed = api.get(f"/api/v1/projects/{their_ref}/runs", headers=second.headers())
    assert listed.status_code == 200, listed.text
    assert [run["id"] for run in listed.json()["data"]] == [theirs]
    # ...and the first project's keys, of every environment, get a 404 for it.
    for env in ("dev", "staging", "prod"):
        refused = api.get(f"/api/v1/projects/{their_ref}/runs", headers=project.headers(env))
        assert (refused.status_code, refused.json()) == (404, {"error": "Project not found"})
        assert theirs not in refused.text
    # The other way round too.
    refused = api.get(f"/api/v1/projects/{ref_of(project)}/runs", headers=second.headers())
    assert (refused.status_code, refused.json()) == (404, {"error": "Project not found"})
    assert mine not in refused.text


def test_the_migration_gives_existing_projects_a_ref() -> None:
    """0010 backfills: a project created before it gets a ref of the same shape."""
    url = normalise_database_url(get_settings().database_url)
    admin = url.replace("postgresql+psycopg", "postgresql")
    name = f"reprise_scratch_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    scratch = url.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(scratch, "0009")
        plain = scratch.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute("INSERT INTO projects (id, slug, name) VALUES ('p1', 'old', 'Old'), "
                         "('p2', 'older', 'Older')")
        upgrade(scratch, "0010")
        with psycopg.connect(plain) as conn:
            refs = [row[0] for row in conn.execute("SELECT ref FROM projects ORDER BY id")]
        assert len(refs) == 2
        assert len(set(refs)) == 2
        assert all(REF.fullmatch(ref) for ref in refs), refs
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
