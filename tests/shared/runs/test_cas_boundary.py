"""Only the lifecycle changes a run's status: :mod:`shared.runs.cas` (the compare-and-set
engine) is imported by ``shared/runs/lifecycle.py`` and by no other module of the server or
the benchmarks, so every status change goes through a named move. (Tests may import it, to
put a run into a state for a race.)"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.live_server import ROOT

CAS = "reprise_server.shared.runs.cas"
# The server package's folders (linked into server/reprise_server/), and the benchmarks.
FOLDERS = ("api", "shared", "workers", "examples", "bench")


def _imports_cas(path: Path) -> bool:
    """Whether the file imports the engine, at module level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # The code base imports absolutely (a relative import would escape this check).
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        if any(module == CAS or module.startswith(f"{CAS}.") for module in modules):
            return True
    return False


def _modules() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))


def test_only_the_lifecycle_imports_the_compare_and_set_engine() -> None:
    importers = [str(path.relative_to(ROOT)) for path in _modules() if _imports_cas(path)]

    assert importers == ["shared/runs/lifecycle.py"]


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    forms = [
        "from reprise_server.shared.runs import cas",
        "from reprise_server.shared.runs import lifecycle, cas as engine",
        "from reprise_server.shared.runs.cas import transition",
        "import reprise_server.shared.runs.cas",
        "def later() -> None:\n    from reprise_server.shared.runs.cas import touch",
    ]
    for number, source in enumerate(forms):
        module = tmp_path / f"m{number}.py"
        module.write_text(source + "\n")
        assert _imports_cas(module), source
    unrelated = tmp_path / "unrelated.py"
    unrelated.write_text("from reprise_server.shared.runs import repository, lifecycle\n"
                         "import reprise_server.shared.runs.cascade\n")
    assert not _imports_cas(unrelated)
