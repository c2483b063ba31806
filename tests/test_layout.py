"""The package layout: no import cycles, and each package imports only what its docstring allows.

The import graph is read from the source (every module of ``dialer/``, parsed
with :mod:`ast`), so it holds imports made inside functions too (the lazy
ones that keep ``dialer --help`` fast), not only the module-level ones. Imports
under ``if TYPE_CHECKING:`` never run and are left out. Importing
``dialer.a.b`` runs ``dialer/a/__init__.py`` first, so an import of a module
also counts as an import of each package above it (except the importer's own
packages, which are always loaded before it).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import dialer

ROOT = Path(dialer.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _packages_above(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imported_names(module: str, tree: ast.AST) -> list[tuple[str, int]]:
    """(dotted name, line) of every import that can run, wherever it is written."""
    found: list[tuple[str, int]] = []
    is_package = MODULES[module].name == "__init__.py"

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            for child in node.orelse:  # type: ignore[attr-defined]
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join(here + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in MODULES else base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _owner(name: str) -> str | None:
    """The dialer module a dotted import name loads (``dialer.x.Name`` -> ``dialer.x``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {module it imports: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges: dict[str, int] = {}
        own = set(_packages_above(module))
        for name, line in _imported_names(module, ast.parse(path.read_text(), str(path))):
            target = _owner(name)
            if target is None or target == module:
                continue
            for loaded in [*_packages_above(target), target]:
                if loaded == "dialer" or loaded == module or (loaded in own and loaded != target):
                    continue
                edges.setdefault(loaded, line)
        graph[module] = edges
    return graph


GRAPH = import_graph()


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for v in graph:
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def _where(module: str, target: str) -> str:
    path = MODULES[module].relative_to(ROOT.parent)
    return f"{path}:{GRAPH[module][target]} imports {target}"


def test_the_graph_sees_lazy_imports():
    # dialer.cli.report imports the reports only inside its handler.
    assert "dialer.reports" in GRAPH["dialer.cli.report"]
    # and an import of a submodule loads its package first
    assert "dialer.leads" in GRAPH["dialer.campaigns.store"]


def test_no_import_cycles():
    found = cycles(GRAPH)
    lines = []
    for component in found:
        members = set(component)
        lines += [_where(m, t) for m in component for t in GRAPH[m] if t in members]
    assert not found, "import cycles:\n" + "\n".join(lines)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


PACKAGES = sorted(name for name, path in MODULES.items() if path.name == "__init__.py" and name != "dialer")


def allowed(package: str) -> list[str] | None:
    """The dialer modules and packages the package's docstring says it may import
    (its ``May import:`` paragraph); None for "any part of dialer"."""
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    start = doc.find("May import:")
    assert start >= 0, f"{package}'s docstring has no 'May import:' paragraph"
    paragraph = doc[start:].split("\n\n")[0]
    if "any part of dialer" in paragraph:
        return None
    sentence = re.split(r"\.\s", paragraph, maxsplit=1)[0]  # the list; what follows is prose
    return re.findall(r"\bdialer(?:\.\w+)+", sentence)


def _permitted(target: str, package: str, names: list[str]) -> bool:
    # A name allows itself, what is inside it, and the packages above it (loaded on the way).
    return _in(target, package) or any(_in(target, n) or _in(n, target) for n in names)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_its_docstring_allows(package):
    names = allowed(package)
    if names is None:
        return
    bad = [_where(m, t) for m in GRAPH if _in(m, package) for t in GRAPH[m] if not _permitted(t, package, names)]
    assert not bad, f"{package} may import {names}, but:\n" + "\n".join(bad)


def reachable(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


# The lines the layout must never cross, however indirectly.
NEVER = [
    ("dialer.sim", "dialer.db"),            # the simulator has no database
    ("dialer.sim", "dialer.models"),
    ("dialer.sim", "dialer.engine"),
    ("dialer.ami", "dialer.engine"),        # the AMI client knows nothing of the engine
    ("dialer.ami", "dialer.calls"),
    ("dialer.ami", "dialer.models"),
    ("dialer.leads", "dialer.ami"),         # leads are data: no AMI
    ("dialer.leads", "dialer.engine"),
    ("dialer.compliance", "dialer.campaigns"),
    ("dialer.reports", "dialer.engine"),    # reports read the database alone
    ("dialer.web", "dialer.engine"),        # the console too
    ("dialer.web", "dialer.ami"),
]


@pytest.mark.parametrize(("package", "never"), NEVER, ids=[f"{p} -/-> {n}" for p, n in NEVER])
def test_never_even_indirectly(package, never):
    bad = sorted({m for m in GRAPH if _in(m, package) for t in reachable(m) if _in(t, never)})
    assert not bad, f"{never} is reachable from {bad}"


def test_nothing_but_the_entry_point_imports_the_command_line():
    bad = [_where(m, t) for m in GRAPH if not _in(m, "dialer.cli") and m != "dialer.__main__"
           for t in GRAPH[m] if _in(t, "dialer.cli")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_does(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    first = doc.split("\n\n")[0]
    assert first and len(first) < 400, f"{package}: the docstring's first paragraph says what the package does"
