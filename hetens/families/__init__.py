"""One adapter module per model family, behind one table.

An adapter only translates: a model name (registry name or path), a head and
a device into the family's own ASE calculator, through the family's official
loader. It makes no policy decisions (weights, level-of-theory checks and
error policy live in :mod:`hetens.member` and :mod:`hetens.calculator`).

Each adapter module provides::

    load(model: str, *, head: str | None, device: str, options: dict[str, str]) -> Calculator
    weights_status(model: str) -> str   # "shipped", "cached", "local file" or "download"
    versions() -> dict[str, str]        # package name -> version
    elements(calculator) -> frozenset[int] | None   # optional: atomic numbers it was
                                                    # trained on (None or absent: unknown)

Adapters are imported only when a member of that family is loaded, so
``import hetens`` imports no model package.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from hetens.errors import MissingFamilyError, UnknownModelError

__all__ = ["Family", "FAMILIES", "get_family"]


@dataclass(frozen=True)
class Family:
    """A model family: its adapter module, the packages it needs and the pip extra."""

    name: str
    packages: tuple[str, ...]
    extra: str
    description: str

    @property
    def installed(self) -> bool:
        """Whether every package the family needs can be imported (checked without importing)."""
        return all(importlib.util.find_spec(p) is not None for p in self.packages)

    def adapter(self) -> ModuleType:
        """Import and return the adapter module, or raise :class:`MissingFamilyError`."""
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            raise MissingFamilyError(
                f"model family {self.name!r} needs the package(s) {', '.join(missing)}; "
                f"install them with: pip install 'hetens[{self.extra}]'"
            )
        return importlib.import_module(f"hetens.families.{self.name}")


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sevenn", ("sevenn",), "sevenn", "SevenNet (sevenn); 7net-0/l3i5/mf-0 ship in the wheel"),
        Family("chgnet", ("chgnet",), "chgnet", "CHGNet (chgnet); 0.3.0/0.2.0/r2scan ship in the wheel"),
        Family("mace", ("mace",), "mace", "MACE (mace-torch): MACE-MP-0, MACE-OMAT, MatPES, local .model files"),
        Family("fairchem", ("fairchem.core",), "fairchem", "fairchem-core: UMA and eSEN, local checkpoints"),
        Family("matgl", ("matgl",), "matgl", "MatGL: M3GNet, TensorNet, CHGNet on MatPES, local model folders"),
        Family("diep", ("diep",), "diep", "DIEP (diep 2.x, PyG); diep_fold1 (MatPES r2SCAN) ships in the wheel"),
    )
}


def get_family(name: str) -> Family:
    """The :class:`Family` called ``name``, or :class:`UnknownModelError` listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}"
        ) from None
