"""The package's shape, read from its source with ast: import cycles, module and function sizes.

Imports inside functions count: a cycle that only closes at run time still ties the two
modules together.  Sizes are reported, not yet enforced (xfail lists the offenders).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "asc"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50

# Cycles that exist today and are to be removed (issue #12, split by concern); a new cycle
# fails the test, and so does a listed one that has gone (then delete it here).
KNOWN_CYCLES: set[tuple[str, ...]] = set()  # none left: keep it that way


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package modules it imports (at any depth of its source).

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``;
    a submodule's implicit import of its parent package is not an edge."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                while t and t not in modules and "." in t:  # import a.b.c of a module a.b.c or a name in a.b
                    t = t.rsplit(".", 1)[0]
                if t in modules and t != name:
                    edges.add(t)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_graph_builder_sees_function_level_imports_and_cycles():
    """The checker on a known answer: a -> b at module level, b -> a inside a function."""
    modules = package_modules()
    graph = import_graph(modules)
    assert "asc.config" in graph["asc.inference"]  # imported inside load
    assert "asc.errors" in graph["asc.predict"]  # imported at module level
    assert "asc.data.audio" in graph["asc.predict"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_new_import_cycles():
    found = {tuple(c) for c in cycles(import_graph(package_modules()))}
    new = found - KNOWN_CYCLES
    assert not new, f"import cycle(s) between {sorted(new)}: move the shared code into a module both can import"
    gone = KNOWN_CYCLES - found
    assert not gone, f"the cycle(s) {sorted(gone)} are gone: remove them from KNOWN_CYCLES in {Path(__file__).name}"


def long_functions() -> list[str]:
    out = []
    for name, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{name}.{node.name} ({n} lines)")
    return out


def test_module_sizes():
    """Report (not yet enforced) modules over MAX_MODULE_LINES lines."""
    big = [f"{name} ({n} lines)" for name, path in package_modules().items()
           if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    if big:
        pytest.xfail(f"modules over {MAX_MODULE_LINES} lines (not enforced yet): {', '.join(big)}")


def test_function_sizes():
    """Report (not yet enforced) functions over MAX_FUNCTION_LINES lines."""
    long = long_functions()
    if long:
        pytest.xfail(f"functions over {MAX_FUNCTION_LINES} lines (not enforced yet): {', '.join(long)}")
