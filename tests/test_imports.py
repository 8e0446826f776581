"""The import structure of hetens: no cycles, no private names across modules.

Static: every ``import`` and ``from ... import`` in every module under
``hetens/`` is read with :mod:`ast`, at module level and inside functions
alike (a lazy import is still a dependency), except the ones under
``if TYPE_CHECKING:``, which never run. No module is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hetens"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
PACKAGES = {module_name(p) for p in PACKAGE.rglob("__init__.py")}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def resolve_from(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if module in PACKAGES else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str) -> list[tuple[str, str | None, int]]:
    """(imported hetens module, name taken from it or None, line) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found = []
    for node in import_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
            continue
        source = resolve_from(module, node)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in MODULES:  # "from hetens.workers import pool": the module itself
                found.append((submodule, None, node.lineno))
            else:
                found.append((source, alias.name, node.lineno))
    return [(target, name, line) for target, name, line in found if target.split(".")[0] == "hetens"]


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Module -> the hetens modules importing it runs: the target and the packages above it
    (except packages that contain the importer: those are being imported already)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in imports_of(module):
            for name in (*ancestors(target), target):
                inside = module == name or module.startswith(name + ".")
                if name in MODULES and name != module and not inside:
                    graph[module].add(name)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, as a path that returns to it."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    return sorted(component)


def private_imports() -> list[str]:
    """``from hetens.x import _name`` from another module, and private modules imported
    from outside the package that holds them (``hetens._version`` is everyone's)."""
    found = []
    for module in MODULES:
        where = MODULES[module].relative_to(PACKAGE.parent)
        for target, name, line in imports_of(module):
            if name is not None and is_private(name) and target != module:
                found.append(f"{where}:{line}: from {target} import {name}")
            parts = target.split(".")
            for depth, part in enumerate(parts):
                holder = ".".join(parts[:depth])
                if is_private(part) and not (module == holder or module.startswith(holder + ".")):
                    found.append(f"{where}:{line}: imports {target}, private to {holder}")
                    break
    return found


def test_the_walk_sees_the_package():
    """The walk finds the modules and their imports, function-level ones included."""
    assert {"hetens", "hetens.core.calculator", "hetens.workers.worker_main", "hetens.cli.main"} <= set(MODULES)
    graph = import_graph()
    assert "hetens.errors" in graph["hetens.core.member"]
    assert "hetens.core.member" in graph["hetens.workers.worker_main"]  # imported inside a function
    assert "hetens.cli.options" not in graph["hetens"]  # nothing under TYPE_CHECKING counts


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in hetens:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_imports_across_modules():
    found = private_imports()
    assert not found, "private names imported from other modules:\n" + "\n".join(found)


def test_worker_main_does_not_import_the_parent_side():
    """The program run in every member environment needs members, not the ensemble, the
    combination or the pool (a member that is itself isolated reaches the client lazily)."""
    reached: set[str] = set()
    todo = ["hetens.workers.worker_main"]
    graph = import_graph()
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    parent_side = {"hetens.core.calculator", "hetens.core.pool", "hetens.core.combine", "hetens.core.weights"}
    assert not reached & parent_side, sorted(reached & parent_side)
