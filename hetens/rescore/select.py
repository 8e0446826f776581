"""Uncertainty-aware distillation: split scored frames into uMLIP-labelled and DFT-queued sets.

For each threshold U_c, frames with ``U < U_c`` keep uMLIP labels and the
rest are queued for DFT (Liu et al. 2026; docs/method.md). The DFT fraction is counted in atoms,
``(total atoms - atoms with U < U_c) / total atoms``, and in frames.

Anchors: the energy reference of the uMLIP labels is aligned to the DFT's
later (``hetens merge``) by per-element shifts fitted on frames with both
labels. Frames queued for their high U are the worst for that fit: there the
uMLIPs' own errors, not their reference, set ``E_DFT - E_uMLIP`` (on the
tungsten data, -0.14 eV/atom on calm frames against +0.4 to +1.6 on frames with
U > 10 eV/Å). So for each threshold the ``anchors`` lowest-U frames below U_c
of each element set are queued for DFT too, marked ``hetens_anchor``; merge
fits the shifts on them. ``anchors=0`` gives the paper's split exactly.

With an output folder, each threshold gets ``DIR/Uc_<value>/`` holding
``umlip_labelled.extxyz`` (energy/forces/stress from the label source as
the frame's results) and ``needs_dft.extxyz`` (no labels), and every frame
records ``hetens_label_source``: ``"ensemble"``, the member's name, or
``"dft"``. Labels from one member need the per-member forces that
``hetens score --keep-member-forces`` writes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetens.errors import FrameReadError
from hetens.io.files import atomic_path
from hetens.io.keys import ANCHOR_KEY, LABEL_SOURCE_KEY, MEMBER_ENERGIES_KEY, MEMBER_FORCES_KEY, MEMBER_STRESSES_KEY, MEMBERS_KEY, U_KEY
from hetens.rescore.metrics import dft_fractions
from hetens.rescore.output import unpack_member_forces
from hetens.io.reading import info_float, is_extxyz, iter_frames, scan_extxyz_info

__all__ = ["SelectionResult", "select_frames", "read_scored_u", "threshold_folder", "LABEL_SOURCE_KEY"]

UMLIP_FILE = "umlip_labelled.extxyz"
DFT_FILE = "needs_dft.extxyz"
#: Calm frames per element set queued for DFT at each threshold to fit the energy reference.
DEFAULT_ANCHORS = 3


@dataclass
class SelectionResult:
    """Per-threshold split of a scored set.

    Attributes:
        report: JSON-ready dict: ``inputs``, ``n_frames``, ``n_atoms``,
            ``label_source`` and ``thresholds``, a list with one entry per
            U_c: ``threshold``, ``n_frames_umlip``, ``n_frames_dft``,
            ``n_atoms_umlip``, ``n_atoms_dft``, ``dft_fraction_atoms``,
            ``dft_fraction_frames``, ``n_anchors`` (of the DFT frames, the
            calm ones queued to fit the energy reference) and, with an output
            folder, ``files``.
        uncertainty: (F,) U of every frame, eV/Å.
        n_atoms: (F,) atom counts.
    """

    report: dict[str, Any]
    uncertainty: np.ndarray
    n_atoms: np.ndarray


def threshold_folder(out_dir: str | os.PathLike, threshold: float) -> Path:
    """``out_dir/Uc_<threshold>`` (``%g`` formatting: ``Uc_0.5``, ``Uc_1``)."""
    return Path(out_dir) / f"Uc_{threshold:g}"


def _u_of(info: dict, source) -> float:
    if U_KEY not in info:
        raise FrameReadError(
            f"{source} has no {U_KEY}; select reads files written by 'hetens score' (score this file first)"
        )
    return info_float(info, U_KEY, source)


def read_scored_u(
    paths: Sequence[str | os.PathLike], index: Any = ":", label_source: str = "ensemble"
) -> tuple[np.ndarray, np.ndarray]:
    """(F,) U and (F,) atom counts of scored files; extxyz reads only comment lines (fast).

    A ``label_source`` other than ``"ensemble"`` must be a member of every frame's
    ensemble (ValueError naming the frame and the members otherwise).
    """
    u, n_atoms = [], []
    for path in paths:
        if is_extxyz(path):
            for source, natoms, info in scan_extxyz_info(path, index):
                u.append(_u_of(info, source))
                _check_label_source(info, source, label_source)
                n_atoms.append(natoms)
        else:
            for source, atoms in iter_frames(path, index):
                u.append(_u_of(atoms.info, source))
                _check_label_source(atoms.info, source, label_source)
                n_atoms.append(len(atoms))
    return np.asarray(u, dtype=float), np.asarray(n_atoms, dtype=np.int64)


def _relabel(atoms, source, label_source: str):
    """The frame with the label source's energy/forces/stress as its results."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = atoms.copy()
    frame.info[LABEL_SOURCE_KEY] = label_source
    if label_source == "ensemble":
        if atoms.calc is None or "forces" not in atoms.calc.results:
            raise FrameReadError(
                f"{source} carries no ensemble energy/forces; was it written by 'hetens score'?"
            )
        frame.calc = SinglePointCalculator(frame, **atoms.calc.results)
        return frame
    members = _check_label_source(atoms.info, source, label_source)
    if MEMBER_FORCES_KEY not in atoms.arrays:
        raise FrameReadError(
            f"{source} has no per-member forces ({MEMBER_FORCES_KEY}); labels from one member need them: "
            "rescore with 'hetens score --keep-member-forces'"
        )
    m = members.index(label_source)
    energies = np.atleast_1d(np.asarray(atoms.info[MEMBER_ENERGIES_KEY], dtype=float))
    results = {
        "energy": float(energies[m]),
        "free_energy": float(energies[m]),
        "forces": unpack_member_forces(atoms.arrays[MEMBER_FORCES_KEY], len(members))[m],
    }
    if MEMBER_STRESSES_KEY in atoms.info:
        results["stress"] = np.asarray(atoms.info[MEMBER_STRESSES_KEY], dtype=float).reshape(len(members), 6)[
            m
        ]
    frame.calc = SinglePointCalculator(frame, **results)
    return frame


def _check_label_source(info: dict, source, label_source: str) -> list[str]:
    """The frame's member names; ValueError when ``label_source`` (not ``"ensemble"``) is not one."""
    members = str(info.get(MEMBERS_KEY, "")).split(",")
    if label_source != "ensemble" and label_source not in members:
        raise ValueError(
            f"--label-source {label_source!r} is not a member of the ensemble that scored {source}; "
            f"members: {', '.join(members)}"
        )
    return members


def _queued(atoms, anchor: bool = False):
    """The frame without labels, marked for DFT (and as an anchor of the energy reference)."""
    frame = atoms.copy()
    frame.calc = None
    frame.info[LABEL_SOURCE_KEY] = "dft"
    if anchor:
        frame.info[ANCHOR_KEY] = True
    return frame


def anchor_mask(u, elements: Sequence[Any], thresholds, anchors: int) -> np.ndarray:
    """(K, F) bool: frame f is an anchor at threshold k.

    For each threshold U_c and each element set, the ``anchors`` frames of lowest U
    among those with ``U < U_c`` (ties in file order).

    Args:
        u: (F,) U, eV/Å.
        elements: (F,) a hashable element set per frame.
        thresholds: (K,) U_c, eV/Å.
        anchors: frames per element set and threshold (>= 0).
    """
    u = np.asarray(u, dtype=float)
    uc = np.atleast_1d(np.asarray(thresholds, dtype=float))
    mask = np.zeros((uc.size, u.size), dtype=bool)
    if anchors <= 0 or u.size == 0:
        return mask
    order = np.argsort(u, kind="stable")
    groups: dict[Any, list[int]] = {}
    for f in order:
        groups.setdefault(elements[f], []).append(int(f))
    for k, threshold in enumerate(uc):
        for members in groups.values():
            below = [f for f in members if u[f] < threshold][:anchors]
            mask[k, below] = True
    return mask


def split_counts(u, n_atoms, thresholds, anchors_mask=None) -> dict[str, np.ndarray]:
    """Frames and atoms on each side at each threshold: ``U < U_c`` to the uMLIPs unless an anchor.

    Returns (K,) arrays: those of :func:`hetens.rescore.metrics.dft_fractions` with the
    anchors counted on the DFT side, and ``n_anchors``.
    """
    uc = np.atleast_1d(np.asarray(thresholds, dtype=float))
    anchored = (np.zeros((uc.size, np.size(u)), dtype=bool) if anchors_mask is None
                else np.asarray(anchors_mask, dtype=bool))
    return {**dft_fractions(u, n_atoms, uc, also_dft=anchored), "n_anchors": anchored.sum(axis=1)}


def select_frames(
    scored: str | os.PathLike | Sequence[str | os.PathLike],
    thresholds: Sequence[float],
    *,
    out_dir: str | os.PathLike | None = None,
    label_source: str = "ensemble",
    index: Any = ":",
    anchors: int = DEFAULT_ANCHORS,
) -> SelectionResult:
    """Split scored frames at each threshold U_c; optionally write the two sets per threshold.

    Args:
        scored: file(s) written by ``hetens score``.
        thresholds: (K,) values of U_c in eV/Å; frames with ``U < U_c`` are
            uMLIP-labelled.
        out_dir: folder for ``Uc_<value>/umlip_labelled.extxyz`` and
            ``Uc_<value>/needs_dft.extxyz`` (created; files written atomically).
        label_source: ``"ensemble"`` (weighted mean, default) or a member name.
        index: frame selection applied to each file.
        anchors: at each threshold, the lowest-U frames below U_c of each
            element set also queued for DFT (``hetens_anchor``), for
            ``hetens merge`` to fit the energy reference on (module docstring);
            0 for the plain split.
    """
    paths = [scored] if isinstance(scored, (str, os.PathLike)) else list(scored)
    uc = np.asarray(list(thresholds), dtype=float)
    if uc.size == 0:
        raise ValueError("give at least one threshold U_c")
    if np.any(~np.isfinite(uc)) or np.any(uc < 0):
        raise ValueError(f"thresholds must be finite and >= 0 eV/A; got {uc.tolist()}")
    if isinstance(anchors, bool) or not isinstance(anchors, (int, np.integer)) or anchors < 0:
        raise ValueError(f"anchors must be a whole number >= 0; got {anchors!r}")
    files: list[dict[str, str]] | None = None
    anchored = None
    if anchors or out_dir is None:
        u, n_atoms = read_scored_u(paths, index, label_source)  # also checks every frame's header first
    if anchors:
        elements = [tuple(sorted(set(atoms.get_chemical_symbols()))) for _, atoms in iter_frames(paths, index)]
        anchored = anchor_mask(u, elements, uc, anchors)
    if out_dir is not None:
        u, n_atoms, files = _write_split(paths, index, uc, Path(out_dir), label_source, anchored)
    if u.size == 0:
        raise FrameReadError(f"no frames selected from {', '.join(map(str, paths))}")
    counts = split_counts(u, n_atoms, uc, anchored)
    entries = []
    for k, threshold in enumerate(uc):
        entry = {"threshold": float(threshold)}
        entry.update({key: _plain(values[k]) for key, values in counts.items()})
        if files is not None:
            entry["files"] = files[k]
        entries.append(entry)
    report = {
        "inputs": [str(p) for p in paths],
        "n_frames": int(u.size),
        "n_atoms": int(n_atoms.sum()),
        "label_source": label_source,
        "anchors_per_element_set": int(anchors),
        "thresholds": entries,
    }
    if out_dir is not None:
        with atomic_path(Path(out_dir) / "selection.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    return SelectionResult(report=report, uncertainty=u, n_atoms=n_atoms)


def _plain(value) -> int | float:
    return int(value) if np.issubdtype(np.asarray(value).dtype, np.integer) else float(value)


def _write_split(paths, index, uc: np.ndarray, out_dir: Path, label_source: str, anchored=None):
    from ase.io.extxyz import write_extxyz

    folders = [threshold_folder(out_dir, t) for t in uc]
    files = [{"umlip_labelled": str(f / UMLIP_FILE), "needs_dft": str(f / DFT_FILE)} for f in folders]
    for entry in files:
        for path in entry.values():
            if Path(path).resolve() in {Path(p).resolve() for p in paths}:
                raise ValueError(
                    f"--out-dir {out_dir} would write {path}, which is an input; choose another folder"
                )
    u, n_atoms = [], []
    with _made_folders([out_dir, *folders]), contextlib.ExitStack() as stack:
        handles = []
        for entry in files:
            pair = {}
            for kind, path in entry.items():
                tmp = stack.enter_context(atomic_path(path))
                pair[kind] = stack.enter_context(open(tmp, "w"))
            handles.append(pair)
        for f, (source, atoms) in enumerate(iter_frames(paths, index)):
            value = _u_of(atoms.info, source)
            u.append(value)
            n_atoms.append(len(atoms))
            labelled = queued = None
            for k, (threshold, pair) in enumerate(zip(uc, handles)):
                if anchored is not None and anchored[k, f]:
                    write_extxyz(pair["needs_dft"], [_queued(atoms, anchor=True)])
                elif value < threshold:
                    if labelled is None:
                        labelled = _relabel(atoms, source, label_source)
                    write_extxyz(pair["umlip_labelled"], [labelled])
                else:
                    if queued is None:
                        queued = _queued(atoms)
                    write_extxyz(pair["needs_dft"], [queued])
        for pair in handles:
            for handle in pair.values():
                handle.flush()
    return np.asarray(u, dtype=float), np.asarray(n_atoms, dtype=np.int64), files


@contextlib.contextmanager
def _made_folders(folders: Sequence[Path]):
    """Create ``folders`` (and parents); on an error remove those created here, if still empty."""
    created: list[Path] = []
    for folder in folders:
        missing = [folder, *folder.parents]
        missing = [f for f in missing if not f.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            for made in reversed(created):
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise type(exc)(f"cannot create output folder {folder}: {exc.strerror}") from None
        created.extend(reversed(missing))  # parents first
    try:
        yield
    except BaseException:
        for folder in reversed(created):  # children first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
