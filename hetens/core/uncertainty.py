"""The universal uncertainty U of a heterogeneous ensemble, as pure functions.

Everything here is numpy in, numpy out, with no knowledge of ASE or of the
models. The recipe is the one of Liu et al., npj Comput. Mater. 12, 34 (2026)
(restated in ``docs/method.md``):

1. reference force per atom: the *plain* mean over members,
   ``Fbar[i] = mean_m F[m, i]``;
2. each member's worst atom: ``d[m] = max_i ||F[m, i] - Fbar[i]||``;
3. ``U = sqrt(sum_m w[m] * d[m]**2)``.

Shapes: ``M`` members, ``N`` atoms, optionally a leading batch axis ``B``
(frames with the same atom count). Forces are in eV/Å, energies in eV, so
U and the per-atom ``u`` are in eV/Å.
"""

from __future__ import annotations

import numpy as np

from hetens.core.weights import normalise_weights

__all__ = [
    "reference_forces",
    "member_max_deviation",
    "compute_uncertainty",
    "uncertainty_from_deviations",
    "atomic_uncertainty",
    "energy_spread",
    "weighted_mean",
    "max_force_error",
    "most_deviating_member",
]


def _as_member_forces(member_forces) -> np.ndarray:
    forces = np.asarray(member_forces, dtype=float)
    if forces.ndim < 3 or forces.shape[-1] != 3:
        raise ValueError(
            "member_forces must have shape (M, N, 3) or (B, M, N, 3) in eV/A; "
            f"got shape {forces.shape}"
        )
    if forces.shape[-3] == 0:
        raise ValueError("member_forces holds no members (M = 0)")
    return forces


def reference_forces(member_forces) -> np.ndarray:
    """Plain (unweighted) mean force per atom over members, the reference of U.

    Args:
        member_forces: (M, N, 3) or (B, M, N, 3) forces in eV/Å.

    Returns:
        (N, 3) or (B, N, 3) mean forces in eV/Å.
    """
    forces = _as_member_forces(member_forces)
    return _plain_mean(forces)[..., 0, :, :]


def _plain_mean(forces: np.ndarray) -> np.ndarray:
    """Member mean, (..., 1, N, 3), computed about member 0 so identical members give it exactly."""
    first = forces[..., :1, :, :]
    return first + (forces - first).mean(axis=-3, keepdims=True)


def _deviation_norms(forces: np.ndarray) -> np.ndarray:
    """||F[m, i] - Fbar[i]|| with shape (..., M, N) in eV/Å."""
    deviation = forces - _plain_mean(forces)
    return np.sqrt(np.einsum("...k,...k->...", deviation, deviation))


def member_max_deviation(member_forces) -> np.ndarray:
    """Each member's largest per-atom deviation from the mean force, ``d[m]``.

    Args:
        member_forces: (M, N, 3) or (B, M, N, 3) forces in eV/Å.

    Returns:
        (M,) or (B, M) in eV/Å. A structure with no atoms gives zeros.
    """
    forces = _as_member_forces(member_forces)
    norms = _deviation_norms(forces)
    if norms.shape[-1] == 0:
        return np.zeros(norms.shape[:-1])
    return norms.max(axis=-1)


def compute_uncertainty(member_forces, weights=None) -> float | np.ndarray:
    """The universal uncertainty ``U = sqrt(sum_m w[m] d[m]**2)`` in eV/Å.

    Args:
        member_forces: (M, N, 3) forces of one structure, or (B, M, N, 3) for
            a batch of structures with equal atom counts, in eV/Å.
        weights: (M,) non-negative member weights; normalised here. ``None``
            means uniform.

    Returns:
        A float for one structure, a (B,) array for a batch.
    """
    forces = _as_member_forces(member_forces)
    return uncertainty_from_deviations(member_max_deviation(forces), weights)


def uncertainty_from_deviations(deviations, weights=None) -> float | np.ndarray:
    """U from each member's worst-atom deviation: ``sqrt(sum_m w[m] d[m]**2)`` in eV/Å.

    The one place the formula is written: :func:`compute_uncertainty`,
    :func:`hetens.core.combine.combine_predictions` and the vectorised scoring
    (:func:`hetens.rescore.scoring.score_predictions`) call it. Given the
    per-atom deviations ``||F[m, i] - Fbar[i]||`` instead, it returns the
    per-atom ``u[i]``.

    Args:
        deviations: (M,) ``d[m]`` of one structure (see
            :func:`member_max_deviation`), or (B, M) for B structures, in eV/Å.
        weights: (M,) non-negative member weights; normalised here. ``None``
            means uniform.

    Returns:
        A float for (M,) deviations, a (B,) array for (B, M), in eV/Å.
    """
    d = np.asarray(deviations, dtype=float)
    if d.ndim == 0:
        raise ValueError(f"deviations need a member axis, (M,) or (B, M) in eV/A; got shape {d.shape}")
    w = normalise_weights(weights, d.shape[-1])
    u = np.sqrt(d**2 @ w)
    return float(u) if np.ndim(u) == 0 else u


def atomic_uncertainty(member_forces, weights=None) -> np.ndarray:
    """Per-atom uncertainty ``u[i] = sqrt(sum_m w[m] ||F[m, i] - Fbar[i]||**2)``.

    The reference ``Fbar`` is the plain mean, as for U, so ``max_i u[i] <= U``.

    Args:
        member_forces: (M, N, 3) or (B, M, N, 3) forces in eV/Å.
        weights: (M,) member weights, ``None`` for uniform.

    Returns:
        (N,) or (B, N) in eV/Å.
    """
    forces = _as_member_forces(member_forces)
    w = normalise_weights(weights, forces.shape[-3])
    norms = _deviation_norms(forces)
    return np.sqrt(np.einsum("m,...mn->...n", w, norms**2))


def weighted_mean(member_values, weights=None) -> np.ndarray:
    """Weighted mean over the member axis (axis 0) of any per-member array.

    Args:
        member_values: (M, ...) member predictions (energies in eV, forces in
            eV/Å, stresses in eV/Å³...).
        weights: (M,) weights, ``None`` for uniform.

    Returns:
        The array without its member axis, same units.
    """
    values = np.asarray(member_values, dtype=float)
    if values.ndim == 0 or values.shape[0] == 0:
        raise ValueError(f"member_values needs a non-empty member axis; got shape {values.shape}")
    w = normalise_weights(weights, values.shape[0])
    return np.tensordot(w, values, axes=(0, 0))


def energy_spread(member_energies, n_atoms: int, weights=None) -> float | np.ndarray:
    """Weighted standard deviation of member energies about their weighted mean, per atom.

    Args:
        member_energies: (M,) energies of one structure or (B, M) for a batch,
            in eV.
        n_atoms: atom count N (or a (B,) array), used to express the spread
            per atom.
        weights: (M,) weights, ``None`` for uniform.

    Returns:
        Spread in eV/atom: a float, or (B,) for a batch.
    """
    energies = np.asarray(member_energies, dtype=float)
    if energies.ndim == 0 or energies.shape[-1] == 0:
        raise ValueError(f"member_energies needs a member axis; got shape {energies.shape}")
    w = normalise_weights(weights, energies.shape[-1])
    # About the first member, so identical members give exactly zero.
    shifted = energies - energies[..., :1]
    mean = shifted @ w
    var = ((shifted - np.expand_dims(mean, -1)) ** 2) @ w
    n = np.asarray(n_atoms, dtype=float)
    if np.any(n <= 0):
        raise ValueError(f"n_atoms must be positive to express a spread per atom; got {n_atoms}")
    spread = np.sqrt(np.maximum(var, 0.0)) / n
    return float(spread) if np.ndim(spread) == 0 else spread


def max_force_error(forces, reference_forces_) -> float | np.ndarray:
    """The error U is meant to track: ``eps = max_i ||F_ref[i] - F[i]||`` in eV/Å.

    Args:
        forces: (N, 3) or (B, N, 3) predicted forces (for the paper, the plain
            ensemble mean ``Fbar``), eV/Å.
        reference_forces_: same shape, reference (DFT) forces, eV/Å.

    Returns:
        A float, or (B,) for a batch.
    """
    a = np.asarray(forces, dtype=float)
    b = np.asarray(reference_forces_, dtype=float)
    if a.shape != b.shape or a.shape[-1:] != (3,):
        raise ValueError(f"force arrays must share a (..., N, 3) shape; got {a.shape} and {b.shape}")
    diff = a - b
    norms = np.sqrt(np.einsum("...k,...k->...", diff, diff))
    eps = norms.max(axis=-1) if norms.shape[-1] else np.zeros(norms.shape[:-1])
    return float(eps) if np.ndim(eps) == 0 else eps


def most_deviating_member(member_forces, weights=None) -> int | np.ndarray:
    """Index of the member with the largest weighted contribution ``w[m] d[m]**2`` to U.

    Args:
        member_forces: (M, N, 3) or (B, M, N, 3) forces in eV/Å.
        weights: (M,) weights, ``None`` for uniform.

    Returns:
        An int, or (B,) ints for a batch.
    """
    forces = _as_member_forces(member_forces)
    w = normalise_weights(weights, forces.shape[-3])
    contribution = w * member_max_deviation(forces) ** 2
    idx = np.argmax(contribution, axis=-1)
    return int(idx) if np.ndim(idx) == 0 else idx
