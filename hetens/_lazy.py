"""The one lazy-export mechanism of hetens' packages, and the moved-module aliases.

A package lists the names it exports in an ``if TYPE_CHECKING:`` block of
``from M import a, b`` lines; :func:`lazy_exports` reads that block (with
:mod:`ast`, importing nothing) and returns the package's ``__all__``,
``__getattr__`` and ``__dir__``: a name is imported from its module on first
use. Type checkers read the same block as plain imports, so the two cannot
disagree. Used by ``hetens``, ``hetens.rescore``, ``hetens.workers``,
``hetens.monitor`` and ``hetens.jobs``.

:data:`MOVED` maps the module paths of release 0.x before the core, catalogue
and jobs folders (issue 21) to their new homes; :func:`install_moved_aliases`
lets ``import hetens.calculator`` still work, as an alias of
``hetens.core.calculator`` (the same module object), for one release.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from typing import Any

#: old module path -> new module path (docs/architecture.md has the map).
MOVED = {
    "hetens.calculator": "hetens.core.calculator",
    "hetens.member": "hetens.core.member",
    "hetens.evaluation": "hetens.core.evaluation",
    "hetens.group_evaluation": "hetens.core.group_evaluation",
    "hetens.validation": "hetens.core.validation",
    "hetens.combine": "hetens.core.combine",
    "hetens.uncertainty": "hetens.core.uncertainty",
    "hetens.weights": "hetens.core.weights",
    "hetens.device": "hetens.core.device",
    "hetens.frames": "hetens.core.frames",
    "hetens.factory": "hetens.core.factory",
    "hetens.ensemble": "hetens.core.ensemble",
    "hetens.ensemble_file": "hetens.core.ensemble_file",
    "hetens.workers.pool": "hetens.core.pool",
    "hetens.spec": "hetens.catalogue.spec",
    "hetens.registry": "hetens.catalogue.registry",
    "hetens.availability": "hetens.catalogue.availability",
    "hetens.envs": "hetens.catalogue.envs",
    "hetens.models_table": "hetens.catalogue.models_table",
    "hetens.presets": "hetens.catalogue.presets",
    "hetens.singlepoint": "hetens.jobs.singlepoint",
    "hetens.monitor.run": "hetens.jobs.md",
    "hetens.monitor.relax": "hetens.jobs.relax",
    "hetens.rescore.live": "hetens.jobs.score_live",
    "hetens.rescore.reading": "hetens.io.reading",
}


def lazy_exports(
    package: str, source_file: str
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` from the ``if TYPE_CHECKING:`` block of ``source_file``."""
    with open(source_file, encoding="utf-8") as source:
        tree = ast.parse(source.read(), filename=source_file)
    table: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    table.update({alias.asname or alias.name: statement.module for alias in statement.names})
    names = sorted(table)
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return names

    return list(table), __getattr__, __dir__


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers only for the old paths in :data:`MOVED`: the module is the new one, not a copy."""

    def __init__(self) -> None:
        self.own_specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        module = importlib.import_module(MOVED[spec.name])
        self.own_specs[module.__name__] = module.__spec__  # the import machinery overwrites it
        return module

    def exec_module(self, module: Any) -> None:
        """Nothing to run: the new module is already imported (its own spec is put back)."""
        module.__spec__ = self.own_specs[module.__name__]


def install_moved_aliases() -> None:
    """Let the old module paths of :data:`MOVED` import (once per process).

    First on ``sys.meta_path``, so that no other copy of hetens on the path
    (an editable install elsewhere) answers for an old path first.
    """
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
