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

__all__ = ["combine_predictions", "ENSEMBLE_RESULT_KEYS"]

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
    "dropped_members",
)


def combine_predictions(
    member_energies,
    member_forces,
    weights=None,
    member_stresses=None,
) -> dict[str, Any]:
    """Weighted means, U and its companions for one structure.

    Args:
        member_energies: (M,) energies in eV.
        member_forces: (M, N, 3) forces in eV/Å.
        weights: (M,) weights (normalised here), ``None`` for uniform.
        member_stresses: (M, 6) Voigt stresses in eV/Å³, or ``None``.

    Returns:
        A dict with ASE's ``energy``, ``free_energy`` (eV), ``forces`` (N, 3)
        and, with stresses, ``stress`` (6,), all weighted means; and
        ``uncertainty`` (U, eV/Å, float), ``atomic_uncertainty`` (N,) eV/Å,
        ``energy_std`` (eV/atom), ``member_energies`` (M,),
        ``member_forces`` (M, N, 3), ``member_max_deviation`` (M,) eV/Å,
        ``most_deviating_member`` (int index) and, with stresses,
        ``member_stresses`` (M, 6).
    """
    energies = np.asarray(member_energies, dtype=float).reshape(-1)
    forces = np.asarray(member_forces, dtype=float)
    n_members = energies.shape[0]
    if forces.ndim != 3 or forces.shape[0] != n_members or forces.shape[2] != 3:
        raise ValueError(
            f"member_forces must have shape (M={n_members}, N, 3); got {forces.shape}"
        )
    w = normalise_weights(weights, n_members)
    n_atoms = forces.shape[1]
    deviation = member_max_deviation(forces)
    energy = float(energies @ w)
    results: dict[str, Any] = {
        "energy": energy,
        "free_energy": energy,
        "forces": weighted_mean(forces, w),
        "uncertainty": float(np.sqrt(deviation**2 @ w)),
        "atomic_uncertainty": atomic_uncertainty(forces, w),
        "energy_std": energy_spread(energies, max(n_atoms, 1), w),
        "member_energies": energies,
        "member_forces": forces,
        "member_max_deviation": deviation,
        "most_deviating_member": int(np.argmax(w * deviation**2)),
    }
    if member_stresses is not None:
        stresses = np.asarray(member_stresses, dtype=float)
        if stresses.shape != (n_members, 6):
            raise ValueError(
                f"member_stresses must have shape (M={n_members}, 6) in Voigt order; got {stresses.shape}"
            )
        results["stress"] = weighted_mean(stresses, w)
        results["member_stresses"] = stresses
    return results
