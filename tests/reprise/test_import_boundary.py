"""The SDK is a client: importing it, or parsing a client command of its CLI, loads
nothing of the server — no module of ``reprise_server`` and no server
library — so a backend that only triggers and replays runs needs httpx and pydantic."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib

import pytest

from reprise_server.workers.cli import SERVER_MODULES
from tests.support.live_server import ROOT

SERVER = frozenset({"reprise_server", *SERVER_MODULES})

LOADED_MODULES = "print(json.dumps(sorted(sys.modules)))"

IMPORT_SDK = f"""
import json, sys, reprise
from reprise import task, runs, tasks, configure, TaskContext
{LOADED_MODULES}
"""

PARSE_CLIENT_COMMANDS = f"""
import contextlib, io, json, sys
from reprise.cli import main
for argv in (["runs", "list", "--help"], ["runs", "replay", "--help"], ["trigger", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
{LOADED_MODULES}
"""


def _server_modules_loaded_by(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout  # fmt: skip
    loaded: list[str] = json.loads(out.strip().splitlines()[-1])
    assert "reprise" in loaded
    return [name for name in loaded if name.split(".")[0] in SERVER]


def test_importing_the_sdk_loads_nothing_of_the_server() -> None:
    assert _server_modules_loaded_by(IMPORT_SDK) == []


def test_parsing_a_client_command_loads_nothing_of_the_server() -> None:
    assert _server_modules_loaded_by(PARSE_CLIENT_COMMANDS) == []


def _imports(path: str) -> list[str]:
    """Every absolute import in the file, at module level or inside a function."""
    tree = ast.parse((ROOT / path).read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


SDK_FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "reprise").rglob("*.py"))


@pytest.mark.parametrize("path", SDK_FILES)
def test_the_sdk_source_imports_nothing_of_the_server(path: str) -> None:
    """Also lazy imports: the CLI finds the server's commands through an entry point."""
    server_imports = [name for name in _imports(path) if name.split(".")[0] in SERVER]
    assert server_imports == []


def test_installing_the_sdk_installs_httpx_and_pydantic_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=~!; ]", req, maxsplit=1)[0] for req in project["dependencies"]}
    assert names == {"httpx", "pydantic"}
