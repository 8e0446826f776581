"""The package map holds: every folder imports only folders below it (docs/architecture.md).

Static, like tests/test_imports.py (whose import walk this reuses): every
import in every module under ``hetens/``, function-level ones included, is
an arrow from the importer's layer to the imported module's layer, and an
arrow must not point to a higher layer, except the few listed in
:data:`EXCEPTIONS`, each with its reason.
"""

from __future__ import annotations

from test_imports import MODULES, imports_of

#: layer of each folder (or top-level module), lowest first; a module may import its own
#: layer and any layer below. The same table, with what lives where, is docs/architecture.md.
LAYERS = [
    {"hetens._version", "hetens._lazy", "hetens.errors", "hetens.io"},
    {"hetens.catalogue"},
    {"hetens.families"},
    {"hetens.workers"},
    {"hetens.core", "hetens.testing"},
    {"hetens.monitor", "hetens.rescore", "hetens.distill"},
    {"hetens.jobs"},
    {"hetens.distributed"},
    {"hetens.cli", "hetens.ase_plugin", "hetens"},
]

#: (importer, imported) arrows that point up, and why they are allowed.
EXCEPTIONS = {
    # Probing whether a family can run here means importing its adapter package (lazily).
    ("hetens.catalogue.availability", "hetens.families"): "probing a family imports its adapter",
    # `hetens models` lists the families, and the presets' members (read from the ensemble files).
    ("hetens.catalogue.models_table", "hetens.families"): "the table's family column",
    ("hetens.catalogue.models_table", "hetens.core.ensemble_file"): "presets' member lists",
    # worker_main is the program in the member's environment: it loads members (an entry point).
    ("hetens.workers.worker_main", "hetens.core.member"): "the worker program loads a member",
    ("hetens.workers.worker_main", "hetens.core.group_evaluation"): "the worker program evaluates a group",
}


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest folder or module name that contains ``module``."""
    best, found = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    assert found is not None, f"{module} is in no layer: add its folder to LAYERS and docs/architecture.md"
    return found


def upward_arrows() -> list[str]:
    found = []
    for module in MODULES:
        for target, _, line in imports_of(module):
            if target not in MODULES or (module, target) in EXCEPTIONS:
                continue
            if layer_of(target) > layer_of(module):
                found.append(f"{MODULES[module].name}:{line}: {module} (layer {layer_of(module)}) imports "
                             f"{target} (layer {layer_of(target)})")
    return found


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_layer_of_picks_the_deepest_folder():
    assert layer_of("hetens.core.calculator") == 4
    assert layer_of("hetens.io.reading") == 0
    assert layer_of("hetens") == 8


def test_no_arrow_points_up():
    found = upward_arrows()
    assert not found, "imports against docs/architecture.md's layers:\n" + "\n".join(found)


def test_every_exception_is_still_an_import():
    arrows = {(module, target) for module in MODULES for target, _, _ in imports_of(module)}
    stale = [pair for pair in EXCEPTIONS if pair not in arrows]
    assert not stale, f"exceptions no longer needed (remove them from the table and the docs): {stale}"
