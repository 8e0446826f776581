"""Combine member predictions into the ensemble's results (a pure function).

This is the ensemble's whole arithmetic, kept apart from ASE plumbing (as
ASE's ``Mixer`` is apart from ``LinearCombinationCalculator``): the
calculator, the rescorer and the precomputed-prediction reader all call
:func:`combine_predictions`. It also keeps the books of a dropped member
(``present``): the survivors' weights renormalised, NaN rows in the member
arrays, member indices over the whole ensemble. :func:`stack_member_outputs`
turns the members' ``(energy, forces, stress)`` outputs, ``None`` for a
dropped one, into the arrays it takes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hetens.core.uncertainty import (
    atomic_uncertainty,
    energy_spread,
    member_max_deviation,
    uncertainty_from_deviations,
    weighted_mean,
)
from hetens.core.weights import normalise_weights

__all__ = [
    "combine_predictions",
    "predictor_mask",
    "split_weights",
    "stack_member_outputs",
    "ENSEMBLE_RESULT_KEYS",
]

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
    present=None,
) -> dict[str, Any]:
    """Weighted means, U and its companions for one structure.

    Members are predictors (their weighted mean is the returned energy,
    forces and stress) or witnesses (their forces enter U only; see
    docs/witnesses.md). U and its companions are over every member.

    Members left out by ``present`` (dropped: they failed on this structure)
    enter nothing: the results are exactly those of the present members
    alone, their weights renormalised, and are then laid out over all M
    members, with NaN rows in ``member_energies``, ``member_forces``,
    ``member_stresses`` and ``member_max_deviation``, weight 0 in
    ``member_weights`` and ``predictor_weights``, and
    ``most_deviating_member`` an index into all M.

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
        present: (M,) bool mask, True for the members that gave results;
            ``None`` means all (exactly the numbers of an all-True mask). The
            rows of absent members in the inputs are not read (NaN is fine).
            At least one present member, and one present predictor, is
            required.

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
    stresses = None
    if member_stresses is not None:
        stresses = np.asarray(member_stresses, dtype=float)
        if stresses.shape != (n_members, 6):
            raise ValueError(
                f"member_stresses must have shape (M={n_members}, 6) in Voigt order; got {stresses.shape}"
            )
    keep = _member_mask(present, n_members, "present", "at least one member must have given results")
    if keep.all():
        return _combine(energies, forces, weights, stresses, predictors)
    kept = np.flatnonzero(keep)
    mask = predictor_mask(predictors, n_members) if predictors is not None else None
    if mask is not None and not mask[kept].any():
        raise ValueError("no present member is a predictor; witnesses alone make no prediction")
    results = _combine(
        energies[kept],
        forces[kept],
        None if weights is None else np.asarray(weights, dtype=float)[kept],
        None if stresses is None else stresses[kept],
        None if mask is None else mask[kept],
    )
    for key in ("member_energies", "member_forces", "member_stresses", "member_max_deviation"):
        if key in results:
            full = np.full((n_members, *results[key].shape[1:]), np.nan)
            full[kept] = results[key]
            results[key] = full
    for key in ("member_weights", "predictor_weights"):
        full = np.zeros(n_members)
        full[kept] = results[key]
        results[key] = full
    results["most_deviating_member"] = int(kept[results["most_deviating_member"]])
    return results


def _combine(energies, forces, weights, stresses, predictors) -> dict[str, Any]:
    """:func:`combine_predictions` over members that all gave results (inputs checked)."""
    n_members = energies.shape[0]
    w, _, p_idx, pw = split_weights(weights, n_members, predictors)
    predictor_weights = np.zeros(n_members)
    predictor_weights[p_idx] = pw
    n_atoms = forces.shape[1]
    deviation = member_max_deviation(forces)
    energy = float(energies[p_idx] @ pw)
    results: dict[str, Any] = {
        "energy": energy,
        "free_energy": energy,
        "forces": weighted_mean(forces[p_idx], pw),
        "uncertainty": uncertainty_from_deviations(deviation, weights),
        "atomic_uncertainty": atomic_uncertainty(forces, w),
        "energy_std": energy_spread(energies[p_idx], max(n_atoms, 1), pw),
        "member_energies": energies,
        "member_forces": forces,
        "member_max_deviation": deviation,
        "most_deviating_member": int(np.argmax(w * deviation**2)),
        "member_weights": w,
        "predictor_weights": predictor_weights,
    }
    if stresses is not None:
        results["stress"] = weighted_mean(stresses[p_idx], pw)
        results["member_stresses"] = stresses
    return results


def split_weights(weights, n_members: int, predictors=None) -> tuple[np.ndarray, np.ndarray, Any, np.ndarray]:
    """The U weights of all members and the predictors' own normalised weights.

    Args:
        weights: (M,) raw weights, ``None`` for uniform.
        n_members: M.
        predictors: (M,) bool mask of the predictors, ``None`` for all.

    Returns:
        ``(w, mask, index, pw)``: (M,) U weights ``weights / sum(weights)``;
        the (M,) predictor mask; the predictors' index (``slice(None)`` when
        every member is one, then ``pw`` is ``w`` itself); (P,) their weights
        ``weights[index] / sum(weights[index])``.
    """
    w = normalise_weights(weights, n_members)
    mask = predictor_mask(predictors, n_members)
    if mask.all():
        return w, mask, slice(None), w
    raw = np.ones(n_members) if weights is None else np.asarray(weights, dtype=float)
    index = np.flatnonzero(mask)
    return w, mask, index, normalise_weights(raw[index], index.size)


def predictor_mask(predictors, n_members: int) -> np.ndarray:
    """(M,) bool mask of the predictors: all True for ``None``; at least one True required.

    Args:
        predictors: (M,) booleans (True: predictor, False: witness), or ``None``.
        n_members: M.
    """
    return _member_mask(predictors, n_members, "predictors", "at least one member must be a predictor")


def _member_mask(mask, n_members: int, name: str, need: str) -> np.ndarray:
    """(M,) bool ``mask``, all True for ``None``; raises naming ``name`` and what is ``need``-ed."""
    if mask is None:
        return np.ones(n_members, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (n_members,):
        raise ValueError(
            f"{name} must be a boolean mask with one entry per member (M={n_members}); "
            f"got {mask.dtype} of shape {mask.shape}"
        )
    if not mask.any():
        raise ValueError(f"{name} selects no member; {need}")
    return mask


def stack_member_outputs(outputs, n_atoms: int, with_stress: bool = True):
    """Members' outputs as the arrays :func:`combine_predictions` takes, NaN where one is missing.

    Args:
        outputs: M entries, each ``(energy, forces, stress)`` (eV, (N, 3)
            eV/Å, (6,) eV/Å³ or ``None``) or ``None`` for a member that gave
            no result (dropped).
        n_atoms: N.
        with_stress: whether to return stresses; a missing member, or one
            whose stress is ``None``, gets a NaN row.

    Returns:
        ``(energies, forces, stresses, present)``: (M,) eV, (M, N, 3) eV/Å,
        (M, 6) eV/Å³ or ``None`` without stress, and the (M,) bool mask of the
        members with an output.
    """
    n_members = len(outputs)
    energies = np.full(n_members, np.nan)
    forces = np.full((n_members, n_atoms, 3), np.nan)
    stresses = np.full((n_members, 6), np.nan) if with_stress else None
    present = np.zeros(n_members, dtype=bool)
    for m, output in enumerate(outputs):
        if output is None:
            continue
        present[m] = True
        energies[m] = output[0]
        forces[m] = output[1]
        if stresses is not None and output[2] is not None:
            stresses[m] = output[2]
    return energies, forces, stresses, present
