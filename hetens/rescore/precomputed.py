"""Predictions computed elsewhere: read M files into arrays and check they align.

Each prediction file holds one model's energy and forces for the same frames
in the same order (extxyz as ASE writes it, or anything ASE reads). Users
produce them with any code, in any environment; hetens only reads them.

Reading dominates the cost of scoring precomputed predictions, so extended
XYZ files take the fast path of :mod:`hetens.io.extxyz_arrays` (vectorised,
about 5x faster than ASE, identical results). Anything it does not read
(``VEC`` lines, a malformed atom line) goes through ``ase.io.iread``, whose
error is then reported with file and frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from hetens.errors import AlignmentError, FrameReadError
from hetens.io.extxyz_arrays import read_extxyz_arrays, to_voigt
from hetens.rescore.arrays import FrameArrays, PredictionSet
from hetens.io.reading import check_readable, is_extxyz, iter_frames, parse_index

__all__ = [
    "read_frame_arrays",
    "read_reference",
    "labelled_frame_arrays",
    "check_alignment",
    "load_predictions",
    "member_names_from_paths",
    "DEFAULT_POSITION_TOL",
]

#: Largest distance (Å) between an atom's positions in two files still taken as the same frame.
DEFAULT_POSITION_TOL = 1e-3


def read_frame_arrays(
    path: str | os.PathLike,
    index: Any = ":",
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    require_energy: bool = True,
    format: str | None = None,
) -> FrameArrays:
    """One file's frames, with the energy and forces they carry, as flat arrays.

    Args:
        path: any file ASE reads; extxyz takes the fast path.
        index: frame selection (ASE syntax), applied before anything is parsed.
        energy_key: where the energy is: ``"energy"`` (ASE's calculator result,
            the default) or an ``atoms.info`` key such as ``REF_energy``.
        forces_key: ``"forces"`` (calculator result) or an ``atoms.arrays``
            key such as ``REF_forces``.
        require_energy: raise when a frame has no energy; otherwise the
            result's ``energy`` is ``None`` if any frame lacks one.
        format: ASE format name, guessed when ``None``.

    Raises:
        FrameReadError: a frame cannot be parsed, has no atoms, or lacks
            forces (or energy when required); names file, frame and key.
    """
    path = check_readable(path)
    if is_extxyz(path, format):
        arrays = read_extxyz_arrays(path, parse_index(index), energy_key, forces_key)
        if arrays is not None:
            return _finish(arrays, energy_key, forces_key, require_energy)
    return _finish(
        _read_with_ase(path, index, energy_key, forces_key, format), energy_key, forces_key, require_energy
    )


def _finish(arrays: dict, energy_key: str, forces_key: str, require_energy: bool) -> FrameArrays:
    """Check labels are present and build the :class:`FrameArrays`."""
    path, indices = arrays["path"], arrays["indices"]
    n_atoms = arrays["n_atoms"]
    if n_atoms.size and np.any(n_atoms == 0):
        raise FrameReadError(f"{path} frame {int(indices[np.argmin(n_atoms)])} has no atoms")
    energy = arrays["energy"]
    missing = np.flatnonzero(np.isnan(energy))
    if missing.size:
        if require_energy:
            raise FrameReadError(
                f"{path} frame {int(indices[missing[0]])} has no energy under {energy_key!r}; "
                "name the key that holds it (e.g. --energy-key REF_energy)"
            )
        energy = None
    if arrays["missing_forces"] is not None:
        raise FrameReadError(
            f"{path} frame {int(indices[arrays['missing_forces']])} has no forces under {forces_key!r}; "
            "name the per-atom key that holds them (e.g. --forces-key REF_forces)"
        )
    stress = arrays["stress"]
    if stress is not None and np.isnan(stress).all():
        stress = None  # NaN rows remain for frames without stress
    return FrameArrays(
        path=path,
        n_atoms=n_atoms,
        numbers=arrays["numbers"],
        positions=arrays["positions"],
        cells=arrays["cells"],
        pbc=arrays["pbc"],
        energy=energy,
        forces=arrays["forces"],
        stress=stress,
        indices=indices,
    )


# ---------------------------------------------------------------------- ASE path


def _read_with_ase(path: Path, index: Any, energy_key: str, forces_key: str, format: str | None) -> dict:
    arrays = _collect(iter_frames(path, index, format), str(path), energy_key, forces_key)
    if arrays is None:
        raise FrameReadError(f"{path} holds no frames (selection {index!r})")
    return arrays


def labelled_frame_arrays(
    items,
    path: str = "",
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    require_energy: bool = True,
) -> FrameArrays:
    """:class:`FrameArrays` with labels from ``(FrameSource, Atoms)`` pairs.

    Keys and checks as in :func:`read_frame_arrays`.
    """
    arrays = _collect(items, path, energy_key, forces_key)
    if arrays is None:
        raise FrameReadError(f"{path or 'input'} holds no frames")
    return _finish(arrays, energy_key, forces_key, require_energy)


def _collect(items, path: str, energy_key: str, forces_key: str) -> dict | None:
    n_atoms, numbers, positions, cells, pbc = [], [], [], [], []
    energy, forces, stress, indices = [], [], [], []
    missing_forces = None
    for source, atoms in items:
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        n_atoms.append(len(atoms))
        numbers.append(atoms.numbers)
        positions.append(atoms.positions)
        cells.append(atoms.cell.array)
        pbc.append(atoms.pbc)
        indices.append(source.index if source.index is not None else source.position)
        value = atoms.info.get(energy_key, results.get(energy_key))
        energy.append(np.nan if value is None else float(np.asarray(value).reshape(())))
        frame_forces = atoms.arrays.get(forces_key, results.get(forces_key))
        if frame_forces is None:
            missing_forces = len(indices) - 1 if missing_forces is None else missing_forces
            frame_forces = np.full((len(atoms), 3), np.nan)
        forces.append(np.asarray(frame_forces, dtype=float).reshape(len(atoms), 3))
        frame_stress = results.get("stress", atoms.info.get("stress"))
        stress.append(np.full(6, np.nan) if frame_stress is None else to_voigt(frame_stress))
    if not n_atoms:
        return None
    return {
        "path": path,
        "n_atoms": np.array(n_atoms, dtype=np.int64),
        "numbers": np.concatenate(numbers).astype(np.int64),
        "positions": np.concatenate(positions).astype(float),
        "cells": np.array(cells, dtype=float),
        "pbc": np.array(pbc, dtype=bool),
        "energy": np.array(energy),
        "forces": np.concatenate(forces),
        "stress": np.array(stress),
        "indices": np.array(indices, dtype=np.int64),
        "missing_forces": missing_forces,
    }


# ------------------------------------------------------------------- alignment


def _minimum_image(delta: np.ndarray, cells: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Shortest vectors equivalent to ``delta`` (T, 3) under each atom's periodic cell (T, 3, 3)."""
    out = delta.copy()
    periodic = pbc.any(axis=1) & (np.abs(np.linalg.det(cells)) > 1e-12)
    if periodic.any():
        cell = cells[periodic]
        frac = np.einsum("ti,tij->tj", delta[periodic], np.linalg.inv(cell))
        frac = np.where(pbc[periodic], frac - np.round(frac), frac)
        out[periodic] = np.einsum("ti,tij->tj", frac, cell)
    return out


def read_reference(
    path, index: Any, frames: FrameArrays, *, energy_key: str = "energy", forces_key: str = "forces",
    position_tol: float = DEFAULT_POSITION_TOL,
) -> FrameArrays:
    """Reference (DFT) labels of ``frames`` from ``path``: read (energies optional), checked to be the same frames.

    Raises:
        AlignmentError: ``path`` does not hold ``frames``, in order (names file and frame).
    """
    labels = read_frame_arrays(path, index, energy_key=energy_key, forces_key=forces_key, require_energy=False)
    check_alignment(frames, labels, position_tol)
    return labels


def check_alignment(base: FrameArrays, other: FrameArrays, tol: float = DEFAULT_POSITION_TOL) -> None:
    """Raise :class:`AlignmentError` unless ``other`` holds the frames of ``base``, in order.

    Compares frame count, atom counts, species, periodicity, cells and
    positions (minimum image, within ``tol`` Å).
    """
    hint = "the files must hold the same frames in the same order"
    if other.n_frames != base.n_frames:
        raise AlignmentError(
            f"{other.path} holds {other.n_frames} frames but {base.path} holds {base.n_frames}; {hint}"
        )
    bad = np.flatnonzero(other.n_atoms != base.n_atoms)
    if bad.size:
        f = int(bad[0])
        raise AlignmentError(
            f"{other.frame_label(f)} has {other.n_atoms[f]} atoms but {base.frame_label(f)} "
            f"has {base.n_atoms[f]}; {hint}"
        )
    from ase.data import chemical_symbols

    frame_of_atom = base.frame_of_atom()
    bad = np.flatnonzero(other.numbers != base.numbers)
    if bad.size:
        row = int(bad[0])
        f = int(frame_of_atom[row])
        raise AlignmentError(
            f"{other.frame_label(f)}: atom {row - base.offsets[f]} is "
            f"{chemical_symbols[other.numbers[row]]} but "
            f"{chemical_symbols[base.numbers[row]]} in {base.frame_label(f)}; {hint}"
        )
    bad = np.flatnonzero((other.pbc != base.pbc).any(axis=1))
    if bad.size:
        f = int(bad[0])
        raise AlignmentError(
            f"{other.frame_label(f)} has pbc {other.pbc[f].tolist()} but {base.frame_label(f)} has "
            f"{base.pbc[f].tolist()}; {hint}"
        )
    cell_gap = np.abs(other.cells - base.cells).max(axis=(1, 2)) if base.n_frames else np.zeros(0)
    bad = np.flatnonzero(cell_gap > tol)
    if bad.size:
        f = int(bad[0])
        raise AlignmentError(
            f"{other.frame_label(f)}: the cell differs from {base.frame_label(f)} "
            f"by up to {cell_gap[f]:.3g} A "
            f"(tolerance {tol} A); {hint}"
        )
    distance = np.sqrt(((other.positions - base.positions) ** 2).sum(axis=1))
    moved = np.flatnonzero(distance > tol)
    if moved.size:  # only these can be periodic images of each other
        frames_of_moved = frame_of_atom[moved]
        delta = _minimum_image(
            other.positions[moved] - base.positions[moved],
            base.cells[frames_of_moved],
            base.pbc[frames_of_moved],
        )
        distance[moved] = np.sqrt((delta**2).sum(axis=1))
    bad = np.flatnonzero(distance > tol)
    if bad.size:
        row = int(bad[0])
        f = int(frame_of_atom[row])
        raise AlignmentError(
            f"{other.frame_label(f)}: atom {row - base.offsets[f]} "
            f"({chemical_symbols[base.numbers[row]]}) is "
            f"{distance[row]:.3g} A from its position in {base.frame_label(f)} (tolerance {tol} A); {hint}. "
            "If the files only differ by the precision positions were written with, raise --position-tol."
        )


# ---------------------------------------------------------------- many members


#: File-name endings a default member name drops (compression, then the structure format).
_COMPRESSION_SUFFIXES = (".gz", ".xz", ".bz2", ".zst")
_STRUCTURE_SUFFIXES = (".extxyz", ".xyz", ".traj", ".db", ".json", ".h5", ".xml", ".cif", ".pdb")


def member_name_from_path(path: str | os.PathLike) -> str:
    """A member name from a file name: the file extension(s) removed, the rest kept.

    ``pred_chgnet_0.3.0.extxyz`` -> ``pred_chgnet_0.3.0``, ``mace.xyz.gz`` -> ``mace``;
    dots inside the name (model versions) stay.
    """
    name = Path(path).name
    lower = name.lower()
    for suffixes in (_COMPRESSION_SUFFIXES, _STRUCTURE_SUFFIXES):
        for suffix in suffixes:
            if lower.endswith(suffix) and len(name) > len(suffix):
                name, lower = name[: -len(suffix)], lower[: -len(suffix)]
                break
    return name


def member_names_from_paths(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Member names from file names (``mace.extxyz`` -> ``mace``, ``chgnet_0.3.0.xyz`` ->
    ``chgnet_0.3.0``: :func:`member_name_from_path`), made unique with ``#2``..."""
    names, seen = [], {}
    for path in paths:
        stem = member_name_from_path(path)
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}#{seen[stem]}")
    return names


def _read_one(args: tuple) -> FrameArrays:
    path, index, energy_key, forces_key, format = args
    return read_frame_arrays(path, index, energy_key=energy_key, forces_key=forces_key, format=format)


def load_predictions(
    paths: Sequence[str | os.PathLike],
    names: Sequence[str] | None = None,
    *,
    index: Any = ":",
    energy_key: str = "energy",
    forces_key: str = "forces",
    format: str | None = None,
    position_tol: float = DEFAULT_POSITION_TOL,
    jobs: int = 1,
) -> PredictionSet:
    """Read M prediction files (one per member) and check they hold the same frames.

    Args:
        paths: (M,) prediction files, each one model's energy and forces on
            the same frames in the same order.
        names: (M,) member names; file names without suffix by default.
        index: frame selection applied to every file.
        energy_key, forces_key: where the predictions are stored (see
            :func:`read_frame_arrays`).
        position_tol: largest atom displacement (Å) between files still
            taken as the same frame.
        jobs: files read in parallel processes (1: in this process).

    Returns:
        A :class:`PredictionSet` whose geometry is that of the first file.
        Stresses are kept where given (NaN where a file has none for a frame;
        the ensemble stress exists for frames where every member has one).

    Raises:
        AlignmentError: a file's frames differ from the first file's (names
            file, frame and what differs).
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("give at least one prediction file")
    names = list(names) if names is not None else member_names_from_paths(paths)
    if len(names) != len(paths):
        raise ValueError(f"--names gives {len(names)} names for {len(paths)} prediction files")
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"member names must be unique; repeated: {', '.join(duplicated)}")
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"prediction file {path} does not exist")
    tasks = [(p, index, energy_key, forces_key, format) for p in paths]
    if jobs > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=min(jobs, len(paths))) as pool:
            files = list(pool.map(_read_one, tasks))
    else:
        files = [_read_one(t) for t in tasks]
    base = files[0]
    for other in files[1:]:
        check_alignment(base, other, position_tol)
    stresses = None
    if any(f.stress is not None for f in files):
        stresses = np.stack(
            [f.stress if f.stress is not None else np.full((f.n_frames, 6), np.nan) for f in files], axis=1
        )
    return PredictionSet(
        names=names,
        frames=base,
        member_energies=np.stack([f.energy for f in files], axis=1),
        member_forces=np.stack([f.forces for f in files], axis=1),
        member_stresses=stresses,
        sources=paths,
    )
