"""The accept path's read of the caller and the run it names (real Postgres)."""

from __future__ import annotations

import pytest

from reprise_server.shared.access.service import authenticate_for_run
from reprise_server.shared.db import transaction
from reprise_server.shared.errors import RunNotFound, Unauthorized
from tests.support import triggers
from tests.support.fixtures import ProjectKeys


def test_a_key_finds_runs_of_its_own_environment_only(project: ProjectKeys) -> None:
    run_id = triggers.in_db(project, env="dev", publish=False)
    with transaction() as session:
        auth, head = authenticate_for_run(session, project.keys["dev"], run_id)
        assert (auth.environment_id, head.run_id) == (project.environment_ids["dev"], run_id)
        with pytest.raises(RunNotFound):  # another environment's run is invisible: 404
            authenticate_for_run(session, project.keys["prod"], run_id)
        with pytest.raises(Unauthorized):  # a wrong key is a 401 before anything else
            authenticate_for_run(session, "tr_dev_wrong", run_id)
