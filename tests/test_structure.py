"""The package's shape, read from its source with ast: import cycles, module and function sizes.

Imports inside functions count: a cycle that only closes at run time still ties the two
modules together.  Sizes are enforced: no module over MAX_MODULE_LINES lines, no function
(or method, nested ones included) over MAX_FUNCTION_LINES lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "asc"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50
# Modules (with their submodules) exempt from the size limits, each with its reason; an entry
# fails test_size_exemptions_are_still_needed once its modules fit.
SIZE_EXEMPT: dict[str, str] = {}  # none: keep it that way

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


def within(name: str, module: str) -> bool:
    """Whether ``name`` is ``module`` or one of its submodules."""
    return name == module or name.startswith(module + ".")


def size_exempt(name: str) -> bool:
    return any(within(name, m) for m in SIZE_EXEMPT)


def big_modules(modules: dict[str, Path]) -> list[str]:
    return [f"{name} ({n} lines)" for name, path in modules.items()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]


def long_functions(modules: dict[str, Path]) -> list[str]:
    out = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{name}.{node.name} ({n} lines)")
    return out


def checked_modules() -> dict[str, Path]:
    return {name: path for name, path in package_modules().items() if not size_exempt(name)}


def test_size_checks_on_a_known_answer(tmp_path):
    """The measures on made-up modules: a method and a nested function count on their own."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 2))
    fits = tmp_path / "fits.py"
    fits.write_text(f"def f():\n{body}\n    return 0\n")  # exactly MAX_FUNCTION_LINES lines
    nested = "\n".join("    " + line for line in f"def g():\n{body}\n    x = 1\n    return 0".splitlines())
    long = tmp_path / "long.py"
    long.write_text(f"class C:\n{nested}\n" + "\n" * MAX_MODULE_LINES)
    modules = {"fits": fits, "long": long}
    assert long_functions(modules) == [f"long.g ({MAX_FUNCTION_LINES + 1} lines)"]
    assert big_modules(modules) == [f"long ({MAX_FUNCTION_LINES + 2 + MAX_MODULE_LINES} lines)"]
    assert not size_exempt("asc.bench") and not size_exempt("asc.benchmarks")


def test_module_sizes():
    big = big_modules(checked_modules())
    assert not big, (f"modules over {MAX_MODULE_LINES} lines: {', '.join(big)}; split them where their "
                     "meaning parts (issue #12)")


def test_function_sizes():
    long = long_functions(checked_modules())
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}; split them into their "
                      "steps (issue #12)")


def test_size_exemptions_are_still_needed():
    """An exemption whose modules all fit the limits (or are gone) has done its work: remove it."""
    for exempt in SIZE_EXEMPT:
        modules = {name: path for name, path in package_modules().items() if within(name, exempt)}
        assert big_modules(modules) or long_functions(modules), (
            f"{exempt} fits the size limits now: remove it from SIZE_EXEMPT in {Path(__file__).name}")
