"""What installing Reprise puts in a user's environment, and a worker started the way a user
starts one: the SDK distribution is the ``reprise`` package alone; the server is one package
of its own, ``reprise_server``; and a project whose own packages are called ``api`` and
``shared`` runs its tasks on ``reprise worker`` started, as a console script, from its
directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reprise.cli import SERVER_COMMANDS, _subcommands, build_parser, command_names
from tests.support.fixtures import ProjectKeys, wait_for, wait_for_status
from tests.support.live_server import ROOT
from tests.support.processes import ReproProcess, reprise_process

COPY_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "node_modules", "__pycache__", ".reprise", "bench"
)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The two wheels, built from a copy of the working tree (links kept, as a clone has
    them), each as the set of its files."""
    tmp = tmp_path_factory.mktemp("wheels")
    tree = tmp / "tree"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=COPY_IGNORED)
    out = tmp / "out"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out),
         str(tree), str(tree / "server")],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    built: dict[str, set[str]] = {}
    for wheel in out.glob("*.whl"):
        built[wheel.name.split("-")[0]] = set(zipfile.ZipFile(wheel).namelist())
    return built


def _top_level(files: set[str]) -> set[str]:
    return {name.split("/")[0] for name in files if ".dist-info/" not in name}


@pytest.mark.slow
def test_the_sdk_distribution_installs_the_reprise_package_alone(
    wheels: dict[str, set[str]],
) -> None:
    assert _top_level(wheels["reprise_sdk"]) == {"reprise"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "reprise-sdk"


@pytest.mark.slow
def test_the_server_installs_under_one_name_of_its_own_with_its_files(
    wheels: dict[str, set[str]],
) -> None:
    files = wheels["reprise_server"]
    assert _top_level(files) == {"reprise_server"}
    for expected in (
        "reprise_server/api/app.py",
        "reprise_server/workers/app.py",
        "reprise_server/shared/migrations/script.py.mako",
        "reprise_server/shared/migrations/versions/0001_initial_schema.py",
        "reprise_server/api/dashboard/templates/base.html",
        "reprise_server/api/dashboard/static/favicon.svg",
        "reprise_server/examples/tasks.py",
    ):
        assert expected in files
    entry_points = next(name for name in files if name.endswith(".dist-info/entry_points.txt"))
    assert entry_points.startswith("reprise_server-")


def test_the_sdk_knows_the_server_commands_by_name() -> None:
    """An SDK-only install answers these with a hint instead of 'invalid choice'."""
    client_commands = _subcommands(build_parser(server=False))
    assert set(SERVER_COMMANDS) == command_names() - client_commands


USER_SHARED = """
def greeting(name: str) -> str:
    return f"hello {name}, from the user's own shared package"
"""

USER_TASKS = """
import api
from shared.text import greeting

from reprise import task


@task(id="user-project-greet")
def greet(payload: dict, ctx: object) -> dict:
    return {"message": greeting(payload["name"]), "api": api.NAME}
"""


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A project with packages named ``api`` and ``shared`` of its own, and a tasks module
    that imports both."""
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "__init__.py").write_text('NAME = "the user\'s api"\n')
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "__init__.py").write_text("")
    (tmp_path / "shared" / "text.py").write_text(textwrap.dedent(USER_SHARED))
    (tmp_path / "tasks.py").write_text(textwrap.dedent(USER_TASKS))
    return tmp_path


@pytest.fixture
def user_worker(user_project: Path, own_queues: str) -> Iterator[ReproProcess]:
    """``reprise worker``, the console script of this environment, run from the project's
    directory with its tasks module."""
    env = {
        "REPRISE_TASK_MODULES": "tasks",
        "REPRISE_QUEUE_PREFIX": own_queues,
        "REPRISE_WORKER_VERSION": "20261206.user",
    }
    with reprise_process(
        "worker", "--pool", "solo", env=env, console_script=True, cwd=user_project
    ) as worker:
        yield worker


@pytest.mark.slow
def test_a_project_with_its_own_api_and_shared_runs_its_tasks_on_reprise_worker(
    user_worker: ReproProcess, project: ProjectKeys, api: Any
) -> None:
    def triggered() -> str | None:
        """The run's id once the worker has registered the task (404 until then)."""
        assert user_worker.alive(), user_worker.log()
        response = api.post(
            "/api/v1/tasks/user-project-greet/trigger",
            json={"payload": {"name": "Ada"}},
            headers=project.headers(),
        )
        assert response.status_code in (200, 404), response.text
        return str(response.json()["id"]) if response.status_code == 200 else None

    run_id = wait_for(triggered, timeout=60, interval=0.2, what="the user's task to register")
    run = wait_for_status(run_id, "COMPLETED", "FAILED", "CRASHED", timeout=30)
    assert run.status == "COMPLETED", run.error
    assert run.output == {
        "message": "hello Ada, from the user's own shared package",
        "api": "the user's api",
    }
