"""``hetens merge``: DFT results back into a selection, one energy reference, training sets.

The job behind the command: read a ``hetens select --out-dir`` folder and
the DFT results, match every DFT frame to its queued frame
(:mod:`hetens.distill.matching`), fit per-element shifts on the frames with
both labels and move the uMLIP energies onto the DFT reference
(:mod:`hetens.distill.reference`), then write the merged set for the
trainers (:mod:`hetens.distill.trainsets`) and a provenance JSON.

Everything is read and checked before anything is written: a bad input
leaves the output folder as it was.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetens._version import __version__
from hetens.distill.matching import (
    DEFAULT_POSITION_TOL,
    MergeInputError,
    match_dft,
    read_dft,
    read_selection,
    umlip_energy,
)
from hetens.distill.reference import ShiftFit, UndeterminedShiftsError, composition_matrix, fit_shifts
from hetens.distill.trainsets import (
    DEFAULT_KEYS,
    TrainFrame,
    deepmd_available,
    write_deepmd,
    write_extxyz,
    write_pacemaker,
)
from hetens.errors import MissingExtraError
from hetens.io.keys import ANCHOR_KEY, SOURCE_KEY

__all__ = ["MergeResult", "merge_selection", "FORMATS", "OUTPUT_NAMES"]

#: Training-set formats ``merge`` writes.
FORMATS = ("extxyz", "pacemaker", "deepmd")
#: File (or folder) name of each format, and of the provenance record, in the output folder.
OUTPUT_NAMES = {
    "extxyz": "train.extxyz",
    "pacemaker": "train.pckl.gzip",
    "deepmd": "deepmd",
    "provenance": "provenance.json",
}


@dataclass
class MergeResult:
    """What :func:`merge_selection` built.

    Attributes:
        report: the provenance record (JSON-ready; also written as ``provenance.json``).
        frames: the merged training frames, each once, in the scored input's order.
        fit: the per-element shift fit, or ``None`` (``align=False``, or no uMLIP frames).
    """

    report: dict[str, Any]
    frames: list[TrainFrame]
    fit: ShiftFit | None


def merge_selection(
    selection: str | os.PathLike,
    dft: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike | None,
    *,
    threshold: float | None = None,
    formats: Sequence[str] = ("extxyz", "pacemaker"),
    keys: Mapping[str, str] | None = None,
    align: bool = True,
    allow_missing: bool = False,
    position_tol: float = DEFAULT_POSITION_TOL,
    umlip_weight: float = 1.0,
    dft_weight: float = 1.0,
    dft_format: str | None = None,
    dft_energy_key: str | None = None,
    dft_forces_key: str | None = None,
    reference_energies: Mapping[str, float] | None = None,
) -> MergeResult:
    """Merge DFT results into a selection folder and write the training sets.

    Args:
        selection: a ``Uc_<value>`` folder of ``hetens select --out-dir`` (or
            its parent with one threshold, or ``threshold`` to choose).
        dft: DFT result files, any format ASE reads, any order.
        out_dir: output folder (created), or ``None`` to write nothing.
        formats: any of :data:`FORMATS`.
        keys: label keys of the extxyz (``energy``/``forces``/``stress`` ->
            name), default ``REF_energy``/``REF_forces``/``REF_stress``.
        align: fit per-element shifts and apply them to the uMLIP energies;
            ``False`` keeps the uMLIP energies as they are (with a warning).
        allow_missing: merge without the queued frames that have no DFT
            result (reported under ``missing``) instead of refusing.
        position_tol: largest atom displacement (Å) between a queued frame
            and its DFT result.
        umlip_weight, dft_weight: per-frame training weights of each kind.
        dft_format: ASE format of the DFT files (guessed when ``None``).
        dft_energy_key, dft_forces_key: info/arrays keys of the DFT labels
            when they are not calculator results.
        reference_energies: per-element energies (eV) subtracted for
            pacemaker's ``energy_corrected``.

    Raises:
        MergeInputError: a DFT frame matching nothing, different atoms, a
            missing energy or forces, a queued frame without DFT (without
            ``allow_missing``), two results for one frame.
        UndeterminedShiftsError: the compositions cannot determine the shifts.
        MissingExtraError: ``deepmd`` asked for without dpdata.
        ValueError: an unknown format or a bad weight.
    """
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown training-set format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    if "deepmd" in formats and not deepmd_available():
        raise MissingExtraError(
            "--format deepmd needs dpdata: pip install 'hetens[deepmd-data]' (or pip install dpdata)"
        )
    for name, weight in (("umlip_weight", umlip_weight), ("dft_weight", dft_weight)):
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {weight}")
    if out_dir is not None:
        _check_out_dir(Path(out_dir))

    sel = read_selection(selection, threshold)
    dft_frames = read_dft(dft, format=dft_format, energy_key=dft_energy_key, forces_key=dft_forces_key)
    pairs, missing = match_dft(sel.queued, dft_frames, position_tol=position_tol, allow_missing=allow_missing)
    for q, item in pairs:
        source, queued = sel.queued[q]
        item.umlip_energy = umlip_energy(queued.info, sel.label_source, source)
        atoms = queued.copy()  # the queued frame's info (ids, U...) with the DFT positions and cell
        atoms.positions = item.atoms.positions
        atoms.cell = item.atoms.cell
        item.atoms = atoms

    warnings_out: list[str] = []
    fit = None
    umlip_energies = np.array([u.energy for u in sel.umlip], dtype=float)
    fit_on = "DFT frames"
    if align and sel.umlip:
        elements = sorted({s for x in [*sel.umlip, *(p[1] for p in pairs)] for s in x.atoms.get_chemical_symbols()})
        anchors = [p for p in pairs if p[1].atoms.info.get(ANCHOR_KEY)]
        fit, fit_on = _fit_reference(pairs, anchors, elements, warnings_out)
        umlip_counts = composition_matrix([u.atoms.get_chemical_symbols() for u in sel.umlip], elements)
        umlip_energies = umlip_energies + umlip_counts @ fit.shifts
    elif not align and sel.umlip:
        warnings_out.append(
            "--no-align: uMLIP energies are kept on their own reference; the merged energies mix two "
            "references unless your DFT matches the uMLIPs' (MP-compatible PBE/PBE+U)"
        )
    if missing:
        warnings_out.append(
            f"{len(missing)} queued frame(s) have no DFT result and are left out: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )

    frames = [
        TrainFrame(u.atoms, float(e), u.forces, u.stress, "umlip", sel.label_source, umlip_weight)
        for u, e in zip(sel.umlip, umlip_energies)
    ]
    frames += [TrainFrame(p.atoms, p.energy, p.forces, p.stress, "dft", "dft", dft_weight) for _, p in pairs]
    frames = _in_scored_order(frames)
    report = _report(sel, dft, pairs, missing, frames, fit, align, formats, warnings_out, umlip_weight, dft_weight)
    report["fit_on"] = fit_on if fit is not None else None
    for message in warnings_out:
        warnings.warn(message, UserWarning, stacklevel=2)
    if out_dir is not None:
        report["files"] = _write_all(Path(out_dir), frames, formats, keys, reference_energies, report)
    return MergeResult(report=report, frames=frames, fit=fit)


#: A shift-fit residual above this (eV/atom, RMS) on frames queued for high U, with no
#: anchors, is a sign that the uMLIPs' errors and not their reference set the fit.
BIASED_FIT_RESIDUAL = 0.05


def _fit_reference(pairs, anchors, elements, warnings_out: list[str]):
    """The per-element shifts, fitted on the anchors (calm frames queued for this) when they
    determine them, else on every DFT frame; ``(fit, "anchors" | "DFT frames")``."""
    def fit_of(chosen):
        counts = composition_matrix([p[1].atoms.get_chemical_symbols() for p in chosen], elements)
        return fit_shifts(counts, np.array([p[1].energy for p in chosen]),
                          np.array([p[1].umlip_energy for p in chosen]), elements)

    if anchors:
        try:
            return fit_of(anchors), "anchors"
        except UndeterminedShiftsError as exc:
            warnings_out.append(f"the {len(anchors)} anchor frame(s) cannot determine the shifts ({exc}); "
                                "fitted on every DFT frame instead")
    fit = fit_of(pairs)
    if fit.residual_rmse_per_atom > BIASED_FIT_RESIDUAL:
        warnings_out.append(
            f"the energy-reference shifts were fitted on the frames queued for high U (residual "
            f"{1000 * fit.residual_rmse_per_atom:.0f} meV/atom RMS): there the uMLIPs' own errors, not their "
            "reference, set E_DFT - E_uMLIP, which biases the shifts; queue calm anchor frames with "
            "'hetens select --anchors N' and give their DFT too"
        )
    return fit, "DFT frames"


def _in_scored_order(frames: list[TrainFrame]) -> list[TrainFrame]:
    """``frames`` in the order of the scored input (by ``hetens_source``, ``FILE:INDEX``) when every
    frame has its id; otherwise as given (uMLIP-labelled, then DFT). The same frame then has the
    same position in the sets of every U_c, so a trainer's seeded validation split holds out the
    same frames whatever U_c."""
    keys = []
    for f in frames:
        frame_id = f.atoms.info.get(SOURCE_KEY)
        path, _, index = str(frame_id).rpartition(":")
        if frame_id is None or not index.isdigit():
            return frames
        keys.append((path, int(index)))
    return [f for _, f in sorted(zip(keys, frames), key=lambda item: item[0])]


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output folder {out_dir} is a file")
    parent = out_dir if out_dir.exists() else next((p for p in out_dir.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write output folder {out_dir}: {parent} is not writable")


def _report(sel, dft, pairs, missing, frames, fit, align, formats, warnings_out, umlip_weight, dft_weight) -> dict:
    n_atoms = {kind: sum(len(f.atoms) for f in frames if f.kind == kind) for kind in ("umlip", "dft")}
    total = sum(n_atoms.values())
    report: dict[str, Any] = {
        "selection": str(sel.folder),
        "threshold": sel.threshold,
        "dft_inputs": [str(p) for p in dft],
        "label_source": sel.label_source,
        "ensemble": sel.provenance,
        "n_frames": {"umlip": len(sel.umlip), "dft": len(pairs), "missing": len(missing), "total": len(frames)},
        "n_atoms": {**n_atoms, "total": total},
        "dft_fraction_atoms": (n_atoms["dft"] / total) if total else None,
        "missing": missing,
        "aligned": bool(align and fit is not None),
        "shifts_eV_per_atom": fit.as_dict() if fit is not None else None,
        "fit_frames": fit.n_frames if fit is not None else 0,
        "fit_residual_rmse_eV_per_atom": fit.residual_rmse_per_atom if fit is not None else None,
        "fit_residual_max_eV_per_atom": fit.residual_max_per_atom if fit is not None else None,
        "weights": {"umlip": umlip_weight, "dft": dft_weight},
        "formats": formats,
        "warnings": warnings_out,
        "hetens_version": __version__,
    }
    return report


def _write_all(out_dir: Path, frames, formats, keys, reference_energies, report) -> dict[str, str]:
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {fmt: str(out_dir / OUTPUT_NAMES[fmt]) for fmt in formats}
    files["provenance"] = str(out_dir / OUTPUT_NAMES["provenance"])
    report["files"] = files
    report["keys"] = {**DEFAULT_KEYS, **(keys or {})}
    written: list[Path] = []
    try:
        for fmt in formats:
            target = out_dir / OUTPUT_NAMES[fmt]
            if fmt == "extxyz":
                write_extxyz(frames, target, keys)
            elif fmt == "pacemaker":
                write_pacemaker(frames, target, reference_energies)
            else:
                write_deepmd(frames, target)
            written.append(target)
        from hetens.io.files import atomic_path

        with atomic_path(out_dir / OUTPUT_NAMES["provenance"]) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    except BaseException:
        import shutil

        for path in written:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return files
