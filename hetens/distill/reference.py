"""One energy reference for uMLIP and DFT labels: per-element shifts by least squares (pure numpy).

A user's DFT (code, pseudopotentials, cutoff) and the uMLIPs' MP-compatible
PBE(+U) total energies differ by a constant per element. Over the frames
that carry both labels, ``E_DFT - E_uMLIP ~= C @ s``, with ``C`` the
(F, K) composition matrix (atoms of element k in frame f) and ``s`` the (K,)
shifts in eV per atom of each element. Adding ``C @ s`` to a uMLIP energy
puts it on the DFT reference; forces and stress do not change.

The shifts are determined only when ``C`` has rank K: at least K frames,
and no set of elements that always appear in the same ratio (a W-only set
is fine; a Ni-Al set that is always NiAl is not). :func:`fit_shifts`
refuses the rest with a message that names the elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ShiftFit", "UndeterminedShiftsError", "composition_matrix", "fit_shifts", "apply_shifts"]


class UndeterminedShiftsError(ValueError):
    """The composition matrix cannot determine the per-element shifts (rank below K)."""


@dataclass(frozen=True)
class ShiftFit:
    """Per-element reference shifts fitted on frames with both labels.

    Attributes:
        elements: (K,) element symbols, the column order of ``shifts``.
        shifts: (K,) eV per atom of each element; ``E_DFT ~= E_uMLIP + C @ shifts``.
        n_frames: frames in the fit.
        residual_rmse_per_atom: RMS over frames of ``(E_DFT - E_uMLIP - C @ s) / N``, eV/atom.
        residual_max_per_atom: largest ``|...| / N``, eV/atom.
    """

    elements: tuple[str, ...]
    shifts: np.ndarray
    n_frames: int
    residual_rmse_per_atom: float
    residual_max_per_atom: float

    def as_dict(self) -> dict[str, float]:
        """``{element: shift}`` in eV/atom."""
        return {e: float(s) for e, s in zip(self.elements, self.shifts)}


def composition_matrix(symbol_lists: Sequence[Sequence[str]], elements: Sequence[str]) -> np.ndarray:
    """(F, K) counts of each of ``elements`` in each frame's chemical symbols."""
    column = {e: k for k, e in enumerate(elements)}
    counts = np.zeros((len(symbol_lists), len(elements)), dtype=float)
    for f, symbols in enumerate(symbol_lists):
        for s in symbols:
            counts[f, column[s]] += 1
    return counts


def fit_shifts(
    counts: np.ndarray, e_dft: np.ndarray, e_umlip: np.ndarray, elements: Sequence[str]
) -> ShiftFit:
    """Least-squares per-element shifts ``s`` with ``e_dft - e_umlip ~= counts @ s``.

    Args:
        counts: (F, K) atoms of each element per frame.
        e_dft: (F,) DFT total energies, eV.
        e_umlip: (F,) uMLIP total energies of the same frames, eV.
        elements: (K,) element symbols naming the columns.

    Raises:
        UndeterminedShiftsError: fewer frames than elements, an element in no
            frame, or elements that always appear in the same ratio (rank of
            ``counts`` below K); the message names them.
        ValueError: shapes disagree or energies are not finite.
    """
    counts = np.asarray(counts, dtype=float)
    y = np.asarray(e_dft, dtype=float) - np.asarray(e_umlip, dtype=float)
    elements = tuple(elements)
    if counts.ndim != 2 or counts.shape != (y.shape[0], len(elements)):
        raise ValueError(
            f"counts must have shape (F={y.shape[0]}, K={len(elements)}); got {counts.shape}"
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("energies for the shift fit must be finite")
    if np.any(counts.sum(axis=1) <= 0):
        raise ValueError("every frame of the shift fit needs at least one atom")
    n_frames, n_elements = counts.shape
    _check_determined(counts, elements)
    # Scale columns so that the conditioning does not depend on cell sizes.
    scale = np.abs(counts).max(axis=0)
    shifts, *_ = np.linalg.lstsq(counts / scale, y, rcond=None)
    shifts = shifts / scale
    per_atom = (y - counts @ shifts) / counts.sum(axis=1)
    return ShiftFit(
        elements=elements,
        shifts=shifts,
        n_frames=n_frames,
        residual_rmse_per_atom=float(np.sqrt(np.mean(per_atom**2))),
        residual_max_per_atom=float(np.max(np.abs(per_atom))),
    )


def _check_determined(counts: np.ndarray, elements: tuple[str, ...]) -> None:
    n_frames, n_elements = counts.shape
    if n_elements == 0:
        raise UndeterminedShiftsError("no elements to fit shifts for (no frames with both labels)")
    if n_frames < n_elements:
        raise UndeterminedShiftsError(
            f"cannot determine per-element energy shifts: {n_frames} DFT frame(s) for {n_elements} "
            f"elements ({', '.join(elements)}); need at least one frame per element, of differing "
            "compositions (or use --no-align)"
        )
    absent = [e for e, c in zip(elements, counts.T) if not c.any()]
    if absent:
        raise UndeterminedShiftsError(
            f"cannot determine the energy shift of {', '.join(absent)}: no DFT frame contains it "
            "(or use --no-align)"
        )
    scale = np.abs(counts).max(axis=0)
    _, sing, vt = np.linalg.svd(counts / scale, full_matrices=True)
    tol = sing.max() * max(counts.shape) * 1e-10
    rank = int(np.sum(sing > tol))
    if rank < n_elements:
        null = vt[rank:]  # rows span the null space of the scaled counts
        involved = [e for k, e in enumerate(elements) if np.abs(null[:, k]).max() > 1e-8]
        ratio = _ratio(counts, elements, involved)
        raise UndeterminedShiftsError(
            f"cannot determine per-element energy shifts: elements {', '.join(involved)} appear in "
            f"the same ratio{ratio} in all {n_frames} DFT frames; add DFT frames of other "
            "compositions (or use --no-align)"
        )


def _ratio(counts: np.ndarray, elements: tuple[str, ...], involved: list[str]) -> str:
    cols = [elements.index(e) for e in involved]
    row = counts[0, cols]
    if np.all(row > 0) and np.allclose(row, np.round(row)):
        g = int(np.gcd.reduce(row.astype(int)))
        return f" ({':'.join(str(int(v) // g) for v in row)})"
    return ""


def apply_shifts(counts: np.ndarray, energies: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """(F,) ``energies + counts @ shifts``: uMLIP energies on the DFT reference, eV."""
    return np.asarray(energies, dtype=float) + np.asarray(counts, dtype=float) @ np.asarray(shifts, dtype=float)
