"""Combine member predictions into the ensemble's results (a pure function).

This is the ensemble's whole arithmetic, kept apart from ASE plumbing (as
ASE's ``Mixer`` is apart from ``LinearCombinationCalculator``): the
calculator, the rescorer and the precomputed-prediction reader all call
:func:`combine_predictions`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hetens.uncertainty import (
    atomic_uncertainty,
    energy_spread,
    member_max_deviation,
    weighted_mean,
)
from hetens.weights import normalise_weights

__all__ = ["combine_predictions", "predictor_mask", "ENSEMBLE_RESULT_KEYS"]

#: Keys of hetens' own quantities in ``calc.results`` (beside energy/forces/stress).
ENSEMBLE_RESULT_KEYS = (
    "uncertainty",
    "atomic_uncertainty",
    "energy_std",
    "member_energies",
    "member_forces",
    "member_stresses",
    "member_max_deviation",
    "most_deviating_member",
    "member_weights",
    "predictor_weights",
    "member_roles",
    "dropped_members",
)


def combine_predictions(
    member_energies,
    member_forces,
    weights=None,
    member_stresses=None,
    *,
    predictors=None,
) -> dict[str, Any]:
    """Weighted means, U and its companions for one structure.

    Members are predictors (their weighted mean is the returned energy,
    forces and stress) or witnesses (their forces enter U only; see
    docs/witnesses.md). U and its companions are over every member.

    Args:
        member_energies: (M,) energies in eV (a witness's energy is kept in
            ``member_energies`` but enters nothing).
        member_forces: (M, N, 3) forces in eV/Å.
        weights: (M,) raw weights of all members, ``None`` for uniform. U
            weights are ``weights / sum(weights)``; predictor weights are
            ``weights[predictors] / sum(weights[predictors])``.
        member_stresses: (M, 6) Voigt stresses in eV/Å³, or ``None``.
        predictors: (M,) bool mask, True for predictors; ``None`` means every
            member is a predictor (the paper's ensemble; exactly the numbers
            of an all-True mask).

    Returns:
        A dict with ASE's ``energy``, ``free_energy`` (eV), ``forces`` (N, 3)
        and, with stresses, ``stress`` (6,), all weighted means over the
        predictors; ``energy_std`` (eV/atom, weighted spread over the
        predictors); ``uncertainty`` (U, eV/Å, float), ``atomic_uncertainty``
        (N,) eV/Å, ``member_max_deviation`` (M,) eV/Å and
        ``most_deviating_member`` (int index), over every member with the U
        weights; ``member_energies`` (M,), ``member_forces`` (M, N, 3),
        ``member_weights`` (M,) the U weights, ``predictor_weights`` (M,) (0
        for witnesses) and, with stresses, ``member_stresses`` (M, 6).
    """
    energies = np.asarray(member_energies, dtype=float).reshape(-1)
    forces = np.asarray(member_forces, dtype=float)
    n_members = energies.shape[0]
    if forces.ndim != 3 or forces.shape[0] != n_members or forces.shape[2] != 3:
        raise ValueError(
            f"member_forces must have shape (M={n_members}, N, 3); got {forces.shape}"
        )
    w = normalise_weights(weights, n_members)
    mask = predictor_mask(predictors, n_members)
    if mask.all():
        pw, p_idx = w, slice(None)
    else:
        raw = np.ones(n_members) if weights is None else np.asarray(weights, dtype=float)
        p_idx = np.flatnonzero(mask)
        pw = normalise_weights(raw[p_idx], p_idx.size)
    predictor_weights = np.zeros(n_members)
    predictor_weights[p_idx] = pw
    n_atoms = forces.shape[1]
    deviation = member_max_deviation(forces)
    energy = float(energies[p_idx] @ pw)
    results: dict[str, Any] = {
        "energy": energy,
        "free_energy": energy,
        "forces": weighted_mean(forces[p_idx], pw),
        "uncertainty": float(np.sqrt(deviation**2 @ w)),
        "atomic_uncertainty": atomic_uncertainty(forces, w),
        "energy_std": energy_spread(energies[p_idx], max(n_atoms, 1), pw),
        "member_energies": energies,
        "member_forces": forces,
        "member_max_deviation": deviation,
        "most_deviating_member": int(np.argmax(w * deviation**2)),
        "member_weights": w,
        "predictor_weights": predictor_weights,
    }
    if member_stresses is not None:
        stresses = np.asarray(member_stresses, dtype=float)
        if stresses.shape != (n_members, 6):
            raise ValueError(
                f"member_stresses must have shape (M={n_members}, 6) in Voigt order; got {stresses.shape}"
            )
        results["stress"] = weighted_mean(stresses[p_idx], pw)
        results["member_stresses"] = stresses
    return results


def predictor_mask(predictors, n_members: int) -> np.ndarray:
    """(M,) bool mask of the predictors: all True for ``None``; at least one True required.

    Args:
        predictors: (M,) booleans (True: predictor, False: witness), or ``None``.
        n_members: M.
    """
    if predictors is None:
        return np.ones(n_members, dtype=bool)
    mask = np.asarray(predictors)
    if mask.dtype != bool or mask.shape != (n_members,):
        raise ValueError(
            f"predictors must be a boolean mask with one entry per member (M={n_members}); "
            f"got {mask.dtype} of shape {mask.shape}"
        )
    if not mask.any():
        raise ValueError("predictors selects no member; at least one member must be a predictor")
    return mask
