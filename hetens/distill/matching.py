"""Read a selection folder back and match DFT results to the frames queued for DFT.

A selection folder is one ``Uc_<value>/`` written by ``hetens select
--out-dir`` (``umlip_labelled.extxyz`` and ``needs_dft.extxyz``; the
parent's ``selection.json`` names the label source). DFT results come in
any format ASE reads (OUTCAR, vasprun.xml, extxyz...), any number of
files, any order.

A DFT frame is matched to a queued frame by hetens' frame id
(``hetens_source``, ``FILE:INDEX`` of the scored input) when it carries
one, and always by its atoms: same count, same species in the same order,
same periodicity, cell and positions within ``position_tol`` (Å, minimum
image). A DFT frame without an id (an OUTCAR) is matched by its atoms
alone. Every problem is a :class:`MergeInputError` naming the file and frame.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hetens.errors import FrameReadError
from hetens.io.keys import (
    LABEL_SOURCE_KEY,
    MEMBER_ENERGIES_KEY,
    MEMBERS_KEY,
    PREDICTOR_WEIGHTS_KEY,
    SOURCE_KEY,
    WEIGHTS_KEY,
)

__all__ = [
    "MergeInputError",
    "Labelled",
    "Selection",
    "read_selection",
    "read_dft",
    "match_dft",
    "umlip_energy",
    "DEFAULT_POSITION_TOL",
]

#: Largest atom displacement (Å) between a queued frame and its DFT result.
DEFAULT_POSITION_TOL = 1e-3
UMLIP_FILE = "umlip_labelled.extxyz"
DFT_FILE = "needs_dft.extxyz"


class MergeInputError(FrameReadError):
    """A selection folder or DFT result that cannot be merged; the message names file and frame."""


@dataclass
class Labelled:
    """One frame with its labels.

    Attributes:
        atoms: the structure (``ase.Atoms``, no calculator).
        source: ``"FILE frame I"`` where it was read.
        energy: eV.
        forces: (N, 3) eV/Å.
        stress: (6,) Voigt eV/Å³, or ``None``.
        frame_id: hetens' frame id (``hetens_source``), or ``None``.
        umlip_energy: the uMLIP label's energy of this frame (eV); for DFT
            frames the energy the label source gave the queued frame, or ``None``.
    """

    atoms: Any
    source: str
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None = None
    frame_id: str | None = None
    umlip_energy: float | None = None


@dataclass
class Selection:
    """A selection folder read back.

    Attributes:
        folder: the ``Uc_<value>`` folder.
        threshold: U_c in eV/Å (from ``selection.json`` or the folder name), or ``None``.
        label_source: ``"ensemble"`` or the member whose labels the uMLIP frames carry.
        umlip: the uMLIP-labelled frames.
        queued: ``(source, atoms)`` of the frames queued for DFT.
        provenance: members, weights, roles and hetens version of the scoring.
    """

    folder: Path
    threshold: float | None
    label_source: str
    umlip: list[Labelled]
    queued: list[tuple[str, Any]]
    provenance: dict[str, Any] = field(default_factory=dict)


def _find_folder(path: Path, threshold: float | None) -> Path:
    if (path / DFT_FILE).exists() or (path / UMLIP_FILE).exists():
        return path
    if not path.is_dir():
        raise MergeInputError(
            f"selection folder {path} does not exist (give a folder written by 'hetens select --out-dir')"
        )
    folders = sorted(p for p in path.glob("Uc_*") if p.is_dir())
    if threshold is not None:
        chosen = [p for p in folders if _folder_threshold(p) == threshold]
        if chosen:
            return chosen[0]
        have = ", ".join(p.name for p in folders) or "none"
        raise MergeInputError(f"{path} has no Uc_{threshold:g} folder; it has {have}")
    if len(folders) == 1:
        return folders[0]
    if not folders:
        raise MergeInputError(
            f"{path} holds no {DFT_FILE} and no Uc_* folder; give a folder written by 'hetens select --out-dir'"
        )
    raise MergeInputError(
        f"{path} holds {len(folders)} thresholds ({', '.join(p.name for p in folders)}); give one folder or --threshold"
    )


def _folder_threshold(folder: Path) -> float | None:
    try:
        return float(folder.name.removeprefix("Uc_"))
    except ValueError:
        return None


def _read_frames(path: Path):
    from hetens.io.reading import iter_frames

    if not path.exists() or path.stat().st_size == 0:  # select writes an empty file for an empty side
        return []
    return list(iter_frames(path))


def read_selection(path: str | os.PathLike, threshold: float | None = None) -> Selection:
    """The uMLIP-labelled and queued frames of a ``hetens select --out-dir`` folder.

    Args:
        path: a ``Uc_<value>`` folder, or the ``--out-dir`` folder holding
            exactly one (or ``threshold`` to choose).
        threshold: U_c (eV/Å) choosing the ``Uc_`` folder.

    Raises:
        MergeInputError: no such folder, neither file present, a uMLIP frame without labels.
    """
    folder = _find_folder(Path(path), threshold)
    if not (folder / DFT_FILE).exists() and not (folder / UMLIP_FILE).exists():
        raise MergeInputError(f"{folder} holds neither {UMLIP_FILE} nor {DFT_FILE}")
    label_source = None
    report_path = folder.parent / "selection.json"
    if report_path.exists():
        try:
            label_source = json.loads(report_path.read_text()).get("label_source")
        except (ValueError, AttributeError):
            raise MergeInputError(f"{report_path} is not the JSON 'hetens select' writes") from None
    umlip = []
    for source, atoms in _read_frames(folder / UMLIP_FILE):
        labelled = _labelled(source, atoms, what="uMLIP-labelled frame")
        labelled.umlip_energy = labelled.energy
        frame_source = atoms.info.get(LABEL_SOURCE_KEY)
        if frame_source is not None:
            label_source = label_source or str(frame_source)
        umlip.append(labelled)
    queued = [(str(source), atoms) for source, atoms in _read_frames(folder / DFT_FILE)]
    provenance = {}
    for _, atoms in [*((None, u.atoms) for u in umlip[:1]), *queued[:1]]:
        provenance = _provenance(atoms.info)
        break
    return Selection(
        folder=folder,
        threshold=_folder_threshold(folder),
        label_source=label_source or "ensemble",
        umlip=umlip,
        queued=queued,
        provenance=provenance,
    )


def _provenance(info: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if MEMBERS_KEY in info:
        out["members"] = str(info[MEMBERS_KEY]).split(",")
    for key, name in ((WEIGHTS_KEY, "weights"), (PREDICTOR_WEIGHTS_KEY, "predictor_weights")):
        if key in info:
            out[name] = np.atleast_1d(np.asarray(info[key], dtype=float)).tolist()
    from hetens.io.keys import ROLES_KEY, VERSION_KEY

    if ROLES_KEY in info:
        out["roles"] = str(info[ROLES_KEY]).split(",")
    if VERSION_KEY in info:
        out["scored_with_hetens"] = str(info[VERSION_KEY])
    return out


def _labelled(source, atoms, *, what: str, energy_key: str | None = None, forces_key: str | None = None) -> Labelled:
    """``atoms``' energy, forces and stress (calculator results, or the named info/arrays keys)."""
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    energy = atoms.info.get(energy_key) if energy_key else None
    if energy is None:
        energy = results.get("energy", results.get("free_energy"))
    forces = atoms.arrays.get(forces_key) if forces_key else None
    if forces is None:
        forces = results.get("forces")
    missing = [name for name, value in (("energy", energy), ("forces", forces)) if value is None]
    if missing:
        raise MergeInputError(f"{what} {source} has no {' or '.join(missing)}")
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (len(atoms), 3) or not np.all(np.isfinite(forces)) or not np.isfinite(float(energy)):
        raise MergeInputError(
            f"{what} {source} has unusable energy or forces (non-finite, or wrong shape {forces.shape})"
        )
    stress = results.get("stress")
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    frame = atoms.copy()
    frame.calc = None
    frame_id = atoms.info.get(SOURCE_KEY)
    return Labelled(frame, str(source), float(energy), forces, stress, None if frame_id is None else str(frame_id))


def read_dft(
    paths: Sequence[str | os.PathLike], *, format: str | None = None, energy_key: str | None = None,
    forces_key: str | None = None,
) -> list[Labelled]:
    """Every frame of the DFT result files, with energy and forces.

    Raises:
        MergeInputError: a frame without energy or forces (names file and frame).
        FileNotFoundError, FrameReadError: a file missing or unreadable.
    """
    from hetens.io.reading import iter_frames

    out = []
    for path in paths:
        for source, atoms in iter_frames(path, format=format):
            out.append(_labelled(source, atoms, what="DFT frame", energy_key=energy_key, forces_key=forces_key))
    return out


def umlip_energy(info: dict, label_source: str, source: str) -> float:
    """The energy (eV) the label source gave a scored frame, from its member energies and weights.

    ``"ensemble"``: the weighted mean over the predictors (``hetens_predictor_weights``
    when present, else ``hetens_weights``; a dropped member has weight 0); a
    member's name: that member's energy.
    """
    if MEMBER_ENERGIES_KEY not in info:
        raise MergeInputError(f"queued frame {source} has no {MEMBER_ENERGIES_KEY}; was it written by 'hetens select'?")
    energies = np.atleast_1d(np.asarray(info[MEMBER_ENERGIES_KEY], dtype=float))
    if label_source != "ensemble":
        members = str(info.get(MEMBERS_KEY, "")).split(",")
        if label_source not in members:
            raise MergeInputError(
                f"queued frame {source}: label source {label_source!r} is not one of its members {members}"
            )
        return float(energies[members.index(label_source)])
    key = PREDICTOR_WEIGHTS_KEY if PREDICTOR_WEIGHTS_KEY in info else WEIGHTS_KEY
    if key not in info:
        raise MergeInputError(f"queued frame {source} has no {WEIGHTS_KEY}; was it written by 'hetens select'?")
    weights = np.atleast_1d(np.asarray(info[key], dtype=float))
    used = weights > 0
    return float(np.sum(weights[used] * energies[used]) / np.sum(weights[used]))


def _mismatch(queued, dft, tol: float) -> str | None:
    """Why ``dft`` is not the structure ``queued`` (``None`` when it is)."""
    if len(queued) != len(dft):
        return f"{len(dft)} atoms, the queued frame has {len(queued)}"
    if not np.array_equal(queued.numbers, dft.numbers):
        i = int(np.flatnonzero(queued.numbers != dft.numbers)[0])
        return f"atom {i} is {dft.get_chemical_symbols()[i]}, in the queued frame {queued.get_chemical_symbols()[i]}"
    if not np.array_equal(queued.pbc, dft.pbc):
        return f"pbc {dft.pbc.tolist()}, the queued frame has {queued.pbc.tolist()}"
    if queued.pbc.any() and not np.allclose(queued.cell.array, dft.cell.array, atol=tol, rtol=0):
        return "a different cell"
    delta = dft.positions - queued.positions
    if queued.pbc.any():
        from ase.geometry import find_mic

        delta, _ = find_mic(delta, queued.cell, queued.pbc)
    dist = np.linalg.norm(delta, axis=1)
    worst = int(np.argmax(dist))
    if dist[worst] > tol:
        return f"atom {worst} is {dist[worst]:.3g} A from its queued position (tolerance {tol:g} A)"
    return None


def _atoms_mismatch(queued, dft) -> bool:
    """True when the two frames differ in atoms (count or species), not only in positions."""
    return len(queued) != len(dft) or not np.array_equal(queued.numbers, dft.numbers)


def match_dft(
    queued: Sequence[tuple[str, Any]],
    dft: Sequence[Labelled],
    *,
    position_tol: float = DEFAULT_POSITION_TOL,
    allow_missing: bool = False,
) -> tuple[list[tuple[int, Labelled]], list[str]]:
    """Pair each DFT frame with its queued frame.

    Args:
        queued: ``(source, atoms)`` of the frames queued for DFT.
        dft: the DFT frames (:func:`read_dft`).
        position_tol: largest atom displacement in Å.
        allow_missing: queued frames without a DFT result are reported
            instead of refused.

    Returns:
        ``(pairs, missing)``: ``(queued index, DFT frame)`` for each matched
        frame, in queued order, and the sources of queued frames left
        without DFT (empty unless ``allow_missing``).

    Raises:
        MergeInputError: a DFT frame matching no queued frame, different
            atoms than the frame its id names, two DFT frames for one queued
            frame, or a queued frame without DFT (unless ``allow_missing``).
    """
    by_id: dict[str, int] = {}
    by_formula: dict[tuple, list[int]] = defaultdict(list)
    for q, (_, atoms) in enumerate(queued):
        frame_id = atoms.info.get(SOURCE_KEY)
        if frame_id is not None:
            by_id.setdefault(str(frame_id), q)
        by_formula[(len(atoms), tuple(atoms.numbers))].append(q)
    taken: dict[int, Labelled] = {}
    for item in dft:
        if item.frame_id is not None and item.frame_id in by_id:
            q = by_id[item.frame_id]
            why = _mismatch(queued[q][1], item.atoms, position_tol)
            if why is not None:
                kind = "different atoms than" if _atoms_mismatch(queued[q][1], item.atoms) else "another structure than"
                raise MergeInputError(
                    f"DFT frame {item.source} (frame id {item.frame_id}) has {kind} queued frame {queued[q][0]}: {why}"
                )
        else:
            candidates = by_formula.get((len(item.atoms), tuple(item.atoms.numbers)), [])
            hits = [c for c in candidates if _mismatch(queued[c][1], item.atoms, position_tol) is None]
            if not hits:
                ident = f" (frame id {item.frame_id})" if item.frame_id is not None else ""
                raise MergeInputError(
                    f"DFT frame {item.source}{ident} ({item.atoms.get_chemical_formula()}) matches no frame queued for "
                    f"DFT (same atoms, positions within {position_tol:g} A)"
                )
            free = [c for c in hits if c not in taken]
            q = free[0] if free else hits[0]
        if q in taken:
            raise MergeInputError(
                f"DFT frames {taken[q].source} and {item.source} are both results for queued frame {queued[q][0]}; "
                "keep one"
            )
        taken[q] = item
    missing = [queued[q][0] for q in range(len(queued)) if q not in taken]
    if missing and not allow_missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MergeInputError(
            f"queued frame {missing[0]}{more} has no DFT result; give its result, or --allow-missing to merge "
            "without it"
        )
    return sorted(taken.items()), missing
