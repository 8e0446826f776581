"""Near-duplicate removal for candidate frames: per-species radial distribution fingerprints.

The fingerprint of a structure is, for every pair of species (A, B), the
radial distribution of B atoms around A atoms, smeared with Gaussians and
sampled on a grid (the "RDF fingerprint" of Schütt et al. 2014 and of the
structure comparisons in DP-GEN-like workflows; a two-body cousin of SOAP
that needs no extra package). Two frames are near-duplicates when their
fingerprints differ by less than ``tol`` in relative L2 distance; frames of
different compositions are never duplicates.

Pure numpy (plus ASE's neighbour list).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["rdf_fingerprint", "fingerprint_distance", "select_distinct", "DEFAULT_DEDUP_TOL"]

#: Relative L2 distance below which two fingerprints are the same structure.
DEFAULT_DEDUP_TOL = 0.02


def rdf_fingerprint(atoms, r_max: float = 6.0, n_bins: int = 60, sigma: float = 0.1) -> tuple[str, np.ndarray]:
    """``(composition key, fingerprint)`` of ``atoms``.

    Args:
        atoms: the structure (periodic or not).
        r_max: cutoff, Å; n_bins: grid points in (0, r_max]; sigma: Gaussian width, Å.

    Returns:
        The chemical formula (frames are compared only within one) and a
        ``(n_pairs * n_bins,)`` array: for each sorted species pair, the
        smeared pair-distance density per A atom divided by ``4 pi r^2``.
    """
    from ase.neighborlist import neighbor_list

    numbers = atoms.get_atomic_numbers()
    species = sorted(set(numbers.tolist()))
    grid = np.linspace(r_max / n_bins, r_max, n_bins)
    i, j, d = neighbor_list("ijd", atoms, r_max)
    parts = []
    for a_index, a in enumerate(species):
        n_a = max(int(np.sum(numbers == a)), 1)
        for b in species[a_index:]:
            mask = ((numbers[i] == a) & (numbers[j] == b))
            dist = d[mask]
            if dist.size:
                density = np.exp(-0.5 * ((grid[None, :] - dist[:, None]) / sigma) ** 2).sum(axis=0)
            else:
                density = np.zeros(n_bins)
            parts.append(density / (n_a * 4.0 * np.pi * grid**2 * sigma * np.sqrt(2 * np.pi)))
    return atoms.get_chemical_formula(), np.concatenate(parts)


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 distance ``|a - b| / sqrt((|a|^2 + |b|^2) / 2)`` (0 for identical, ~1.4 for orthogonal)."""
    norm = np.sqrt(0.5 * (float(a @ a) + float(b @ b)))
    return 0.0 if norm == 0 else float(np.linalg.norm(a - b) / norm)


def select_distinct(frames: Sequence, priority: Sequence[float] | None = None, tol: float = DEFAULT_DEDUP_TOL,
                    max_count: int | None = None) -> list[int]:
    """Indices of frames kept after removing near-duplicates, greedily in ``priority`` order.

    Frames are visited from the highest ``priority`` (U, say) down; one is
    kept unless a kept frame of the same composition is within ``tol``
    (:func:`fingerprint_distance`); at most ``max_count`` are kept. Ties keep
    the input order, so the result is deterministic.

    Returns:
        The kept indices, in the order they were kept (highest priority first).
    """
    if tol < 0:
        raise ValueError(f"the duplicate tolerance must be >= 0; got {tol}")
    order = range(len(frames)) if priority is None else np.argsort(-np.asarray(priority, dtype=float), kind="stable")
    kept: list[int] = []
    by_formula: dict[str, _KeptFingerprints] = {}
    for index in order:
        if max_count is not None and len(kept) >= max_count:
            break
        formula, fp = rdf_fingerprint(frames[int(index)])
        bank = by_formula.setdefault(formula, _KeptFingerprints(fp.size))
        if bank.nearest(fp) <= tol:
            continue
        bank.add(fp)
        kept.append(int(index))
    return kept


class _KeptFingerprints:
    """The fingerprints kept for one composition, stacked, so that a candidate is compared with
    all of them in one array operation (:func:`fingerprint_distance`, vectorised)."""

    def __init__(self, size: int) -> None:
        self.rows = np.empty((16, size))
        self.squares = np.empty(16)
        self.n = 0

    def nearest(self, fp: np.ndarray) -> float:
        """The smallest :func:`fingerprint_distance` from ``fp`` to a kept one (``inf`` if none)."""
        if self.n == 0:
            return float("inf")
        rows, squares = self.rows[:self.n], self.squares[:self.n]
        norms = np.sqrt(0.5 * (squares + float(fp @ fp)))
        gaps = np.linalg.norm(rows - fp, axis=1)
        return float(np.min(np.where(norms == 0, 0.0, gaps / np.where(norms == 0, 1.0, norms))))

    def add(self, fp: np.ndarray) -> None:
        if self.n == len(self.rows):  # doubling: appending stays linear overall
            self.rows = np.concatenate([self.rows, np.empty_like(self.rows)])
            self.squares = np.concatenate([self.squares, np.empty_like(self.squares)])
        self.rows[self.n], self.squares[self.n] = fp, float(fp @ fp)
        self.n += 1
