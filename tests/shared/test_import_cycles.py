"""No two modules of ``reprise_server.shared`` import each other, directly or round a
circle: every absolute import counts, at module level or inside a function (a lazy
import hides a cycle, it does not remove it). Imports under ``if TYPE_CHECKING:`` are left
out: they never run, so they cannot tie two modules' loading together."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support.live_server import ROOT

PACKAGE = "reprise_server.shared"
SOURCE = ROOT / "shared"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


MODULES = {
    _module_name(path): path
    for path in sorted(SOURCE.rglob("*.py"))
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:  # the else branch does run
                yield from _import_nodes(other)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _import_nodes(child)


def _imported_modules(path: Path) -> set[str]:
    """The modules of the package that ``path`` imports (``from a import b`` counts as
    importing ``a.b`` when that is a module, else ``a``)."""
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif node.level == 0 and node.module:
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES else node.module
                for alias in node.names
            ]
        else:
            names = []
        found.update(name for name in names if name in MODULES)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing
    itself (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    """The checker itself: a lazy import inside a function is an arrow, a
    ``TYPE_CHECKING`` import is not, and a circle is found."""
    code = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import reprise_server.shared.db\n"
        "def f():\n    from reprise_server.shared.runs import lifecycle\n"
    )
    names = {
        node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
        for node in _import_nodes(code)
    }
    assert names == {"typing", "reprise_server.shared.runs"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}, "b": set()}) == [["a"]]


def test_the_domain_has_no_import_cycle() -> None:
    graph = {name: _imported_modules(path) for name, path in MODULES.items()}
    assert len(graph) > 50  # the walk found the package
    assert _cycles(graph) == []
