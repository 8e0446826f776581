"""Training-set writers for the trainers people use: extxyz (MACE, NequIP), pacemaker, DeePMD.

Each writer takes :class:`TrainFrame` items (a structure, its labels, where
the labels came from and a weight) and writes one file or folder atomically
(a complete file or none). Units are ASE's: eV, eV/Å, eV/Å³.

- :func:`write_extxyz`: labels under ``REF_energy`` / ``REF_forces`` /
  ``REF_stress`` (MACE's and NequIP's keys; configurable), ``config_type``
  (``"dft"`` or ``"umlip"``), ``hetens_label_source`` and ``config_weight``
  (MACE's per-frame weight). No calculator is attached, so ASE writes no
  second, ambiguous ``energy``.
- :func:`write_pacemaker`: a gzip pandas pickle with pacemaker's columns
  ``energy``, ``forces``, ``ase_atoms``, ``energy_corrected`` (plus
  ``label_source``, ``weight``).
- :func:`write_deepmd`: DeePMD's ``deepmd/npy`` folders through ``dpdata``
  (the ``hetens[deepmd-data]`` extra).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetens.errors import MissingExtraError
from hetens.io.files import atomic_path
from hetens.io.keys import LABEL_SOURCE_KEY

__all__ = [
    "TrainFrame",
    "write_extxyz",
    "write_pacemaker",
    "write_deepmd",
    "PACEMAKER_COLUMNS",
    "DEFAULT_KEYS",
]

#: Keys MACE and NequIP read by default (``--energy_key REF_energy`` ...).
DEFAULT_KEYS = {"energy": "REF_energy", "forces": "REF_forces", "stress": "REF_stress"}
#: Columns of the pacemaker pickle (the first four are those pacemaker reads).
PACEMAKER_COLUMNS = ("energy", "forces", "ase_atoms", "energy_corrected", "label_source", "weight")


@dataclass
class TrainFrame:
    """One training frame.

    Attributes:
        atoms: the structure (``ase.Atoms``; its ``info`` is kept).
        energy: total energy, eV (on the merged set's one reference).
        forces: (N, 3) eV/Å.
        stress: (6,) Voigt, eV/Å³, or ``None``.
        kind: ``"dft"`` or ``"umlip"``.
        label_source: ``"dft"``, ``"ensemble"`` or the member's name.
        weight: the frame's training weight.
    """

    atoms: Any
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    kind: str
    label_source: str
    weight: float = 1.0


def _extxyz_frame(frame: TrainFrame, keys: Mapping[str, str]):
    atoms = frame.atoms.copy()
    atoms.calc = None
    for name in ("energy", "free_energy", "forces", "stress"):  # labels of another kind must not linger
        atoms.info.pop(name, None)
        atoms.arrays.pop(name, None)
    if "config_type" in atoms.info and atoms.info["config_type"] not in ("dft", "umlip"):
        atoms.info["hetens_config_type"] = atoms.info["config_type"]
    atoms.info["config_type"] = frame.kind
    atoms.info[LABEL_SOURCE_KEY] = frame.label_source
    atoms.info["config_weight"] = float(frame.weight)
    atoms.info[keys["energy"]] = float(frame.energy)
    atoms.arrays[keys["forces"]] = np.asarray(frame.forces, dtype=float)
    if frame.stress is not None:
        atoms.info[keys["stress"]] = np.asarray(frame.stress, dtype=float)
    return atoms


def write_extxyz(frames: Sequence[TrainFrame], path: str | os.PathLike, keys: Mapping[str, str] | None = None) -> Path:
    """Write ``frames`` as extxyz with labels under ``keys`` (default :data:`DEFAULT_KEYS`).

    Per frame: ``info[keys["energy"]]`` (eV), ``arrays[keys["forces"]]``
    (N, 3) eV/Å, ``info[keys["stress"]]`` (6,) Voigt eV/Å³ when known,
    ``config_type`` (``dft``/``umlip``; an earlier ``config_type`` is kept
    as ``hetens_config_type``), ``hetens_label_source``, ``config_weight``.
    """
    from ase.io.extxyz import write_extxyz as ase_write

    keys = {**DEFAULT_KEYS, **(keys or {})}
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        ase_write(handle, [_extxyz_frame(f, keys) for f in frames])
    return Path(path)


def write_pacemaker(
    frames: Sequence[TrainFrame], path: str | os.PathLike, reference_energies: Mapping[str, float] | None = None
) -> Path:
    """Write pacemaker's gzip-compressed pandas pickle (``pd.read_pickle(path, compression="gzip")``).

    Columns: ``energy`` (eV, total), ``forces`` ((N, 3) arrays, eV/Å),
    ``ase_atoms`` (``ase.Atoms``, no calculator), ``energy_corrected``
    (eV: ``energy`` minus ``reference_energies`` per atom of each element,
    e.g. free-atom energies; ``energy`` itself when none are given),
    ``label_source`` and ``weight``.
    """
    import pandas as pd

    reference_energies = dict(reference_energies or {})
    rows = []
    for f in frames:
        atoms = f.atoms.copy()
        atoms.calc = None
        offset = sum(reference_energies.get(s, 0.0) for s in atoms.get_chemical_symbols())
        rows.append(
            {
                "energy": float(f.energy),
                "forces": np.asarray(f.forces, dtype=float),
                "ase_atoms": atoms,
                "energy_corrected": float(f.energy) - offset,
                "label_source": f.label_source,
                "weight": float(f.weight),
            }
        )
    frame = pd.DataFrame(rows, columns=list(PACEMAKER_COLUMNS))
    with atomic_path(path) as tmp:
        frame.to_pickle(tmp, compression="gzip", protocol=4)
    return Path(path)


def deepmd_available() -> bool:
    """Whether ``dpdata`` can be imported (needed by :func:`write_deepmd`)."""
    import importlib.util

    return importlib.util.find_spec("dpdata") is not None


def write_deepmd(frames: Sequence[TrainFrame], folder: str | os.PathLike) -> Path:
    """Write DeePMD's ``deepmd/npy`` format with ``dpdata``: one subfolder per composition.

    The folder is built beside its target and renamed over it when complete.
    Virials are written only when every frame has a stress (DFT results
    without stress next to uMLIP labels with it: none are written).

    Raises:
        MissingExtraError: ``dpdata`` is not installed (names the extra).
    """
    if not deepmd_available():
        raise MissingExtraError(
            "the DeePMD format needs dpdata: pip install 'hetens[deepmd-data]' (or pip install dpdata)"
        )
    import dpdata
    from ase.calculators.singlepoint import SinglePointCalculator

    folder = Path(folder)
    systems = dpdata.MultiSystems()
    with_stress = all(f.stress is not None for f in frames)  # dpdata cannot mix frames with and without virials
    for f in frames:
        atoms = f.atoms.copy()
        results = {"energy": float(f.energy), "forces": np.asarray(f.forces, dtype=float)}
        if with_stress:
            results["stress"] = np.asarray(f.stress, dtype=float)
        atoms.calc = SinglePointCalculator(atoms, **results)
        systems.append(dpdata.LabeledSystem(atoms, fmt="ase/structure"))
    parent = folder.parent if str(folder.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    try:
        systems.to("deepmd/npy", str(staging))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder
