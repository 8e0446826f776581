"""The ensemble's results and U for many frames at once (vectorised).

:func:`score_predictions` turns a :class:`~hetens.rescore.arrays.PredictionSet`
into :class:`EnsembleScores`. U, the per-atom u and each member's worst-atom
deviation come from :mod:`hetens.core.uncertainty` called on the batch axis, so
the formula is the one the calculator uses.
:func:`frame_results` gives one frame's results in the form of
:func:`hetens.core.combine.combine_predictions`, for :func:`hetens.core.frames.annotate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hetens.rescore.arrays import FrameArrays, PredictionSet
from hetens.core.uncertainty import energy_spread, member_max_deviation, uncertainty_from_deviations

__all__ = [
    "EnsembleScores",
    "score_predictions",
    "frame_results",
    "ReferenceErrors",
    "reference_errors",
    "ERROR_REFERENCES",
    "check_error_reference",
    "error_forces",
]

#: What eps measures the error of (``score``/``calibrate``/``plot --error-reference``):
#: ``"returned"`` (default), the forces hetens returns (the weighted predictor
#: mean); ``"member_mean"``, the plain (unweighted) mean of the predictors'
#: forces, as the paper's notebook measured it (docs/method.md).
ERROR_REFERENCES = ("returned", "member_mean")


@dataclass
class EnsembleScores:
    """Ensemble results for F frames (T atoms in total), M members.

    Attributes:
        weights: (M,) normalised weights.
        uncertainty: (F,) U, eV/Å.
        atomic_uncertainty: (T,) per-atom u, eV/Å.
        member_max_deviation: (F, M) each member's worst-atom deviation d, eV/Å.
        most_deviating: (F,) index of the member contributing most to U.
        energy: (F,) weighted mean energy, eV.
        energy_std: (F,) weighted member energy spread, eV/atom.
        forces: (T, 3) weighted mean forces, eV/Å.
        stress: (F, 6) weighted mean stress, eV/Å³ (NaN rows for frames
            without stress), or ``None``.
        member_weights: (F, M) the weights each frame used: ``weights``,
            except on frames where members were dropped (0 for those, the
            others renormalised); ``None`` when no frame dropped a member.
        predictors: (M,) bool mask of the predictors, ``None`` when every
            member is one (no witnesses).
        predictor_weights: (M,) normalised predictor weights (0 for
            witnesses); ``weights`` when there are no witnesses.
        frame_predictor_weights: (F, M) those of each frame when members
            were dropped, else ``None``.
        raw_weights: (M,) the weights as given (with witnesses only).
    """

    weights: np.ndarray
    uncertainty: np.ndarray
    atomic_uncertainty: np.ndarray
    member_max_deviation: np.ndarray
    most_deviating: np.ndarray
    energy: np.ndarray
    energy_std: np.ndarray
    forces: np.ndarray
    stress: np.ndarray | None
    member_weights: np.ndarray | None = None
    predictors: np.ndarray | None = None
    predictor_weights: np.ndarray | None = None
    frame_predictor_weights: np.ndarray | None = None
    raw_weights: np.ndarray | None = None


def score_predictions(predictions: PredictionSet, weights=None, *, predictors=None) -> EnsembleScores:
    """Weighted means, U and its companions for every frame of ``predictions``.

    No copy and no grouping by atom count: the (T, M, 3) member forces are
    viewed as T one-atom structures, (T, M, 1, 3), so
    :func:`hetens.core.uncertainty.member_max_deviation` returns every atom's
    deviation ``||F[m, i] - Fbar[i]||`` (T, M); the max over each frame's
    atoms (``np.maximum.reduceat``) is then ``d[m]``, and U follows as in
    docs/method.md. Tests check equality with :func:`hetens.core.combine.combine_predictions`.

    Frames where members were dropped (``predictions.dropped``) are then
    recomputed one by one with :func:`hetens.core.combine.combine_predictions`
    over the members left, as the calculator does.

    With witnesses (``predictors`` not all True), energy, forces, stress and
    energy_std are over the predictors with their own normalised weights; U
    and its companions over every member, as
    :func:`hetens.core.combine.combine_predictions` computes them.

    Args:
        predictions: M members on F frames (every frame with at least one atom).
        weights: (M,) raw weights (normalised here), ``None`` for uniform.
        predictors: (M,) bool mask of the predictors; ``None`` for all.
    """
    from hetens.core.combine import split_weights

    w, mask, p_idx, pw = split_weights(weights, predictions.n_members, predictors)
    frames = predictions.frames
    if np.any(frames.n_atoms == 0):
        raise ValueError(f"{frames.frame_label(int(np.argmin(frames.n_atoms)))} has no atoms")
    member_forces = predictions.member_forces
    atom_deviation = member_max_deviation(member_forces[:, :, None, :])  # (T, M)
    starts = frames.offsets[:-1]
    deviation = np.maximum.reduceat(atom_deviation, starts, axis=0) if starts.size else np.zeros((0, len(w)))
    contribution = w * deviation**2
    energies = predictions.member_energies
    stresses = predictions.member_stresses
    scores = EnsembleScores(
        weights=w,
        uncertainty=uncertainty_from_deviations(deviation, weights),
        # The same formula on each atom's deviations is atomic_uncertainty's u[i].
        atomic_uncertainty=uncertainty_from_deviations(atom_deviation, weights),
        member_max_deviation=deviation,
        most_deviating=np.argmax(contribution, axis=1),
        energy=energies[:, p_idx] @ pw,
        energy_std=energy_spread(energies[:, p_idx], frames.n_atoms, pw) if starts.size else np.zeros(0),
        forces=np.tensordot(member_forces[:, p_idx], pw, axes=([1], [0])),
        stress=None if stresses is None else np.einsum("m,fmk->fk", pw, stresses[:, p_idx]),
    )
    if not mask.all():
        scores.predictors = mask
        scores.predictor_weights = np.zeros(len(w))
        scores.predictor_weights[p_idx] = pw
        scores.raw_weights = np.ones(len(w)) if weights is None else np.asarray(weights, dtype=float)
    if predictions.dropped:
        _rescore_dropped(predictions, scores)
    return scores


def _rescore_dropped(predictions: PredictionSet, scores: EnsembleScores) -> None:
    """Recompute, in place, the frames where members were dropped, over the members left."""
    from hetens.core.combine import combine_predictions

    offsets, mask = predictions.frames.offsets, scores.predictors
    weights = scores.weights if mask is None else scores.raw_weights
    if mask is not None:
        scores.frame_predictor_weights = np.tile(scores.predictor_weights, (predictions.n_frames, 1))
    scores.member_weights = np.tile(scores.weights, (predictions.n_frames, 1))
    for frame, why in predictions.dropped.items():
        present = np.array([name not in why for name in predictions.names])
        rows = slice(offsets[frame], offsets[frame + 1])
        stresses = None if predictions.member_stresses is None else predictions.member_stresses[frame]
        with_stress = stresses is not None and bool(np.isfinite(stresses[present]).all())
        results = combine_predictions(
            predictions.member_energies[frame],
            predictions.member_forces[rows].transpose(1, 0, 2),
            weights,
            stresses if with_stress else None,
            predictors=mask,
            present=present,
        )
        scores.uncertainty[frame] = results["uncertainty"]
        scores.atomic_uncertainty[rows] = results["atomic_uncertainty"]
        scores.member_max_deviation[frame] = results["member_max_deviation"]
        scores.most_deviating[frame] = results["most_deviating_member"]
        scores.energy[frame] = results["energy"]
        scores.energy_std[frame] = results["energy_std"]
        scores.forces[rows] = results["forces"]
        if scores.stress is not None:
            scores.stress[frame] = results["stress"] if with_stress else np.nan
        scores.member_weights[frame] = results["member_weights"]
        if mask is not None:
            scores.frame_predictor_weights[frame] = results["predictor_weights"]


def frame_results(predictions: PredictionSet, scores: EnsembleScores, frame: int) -> dict[str, Any]:
    """Frame ``frame``'s results, keyed as :func:`hetens.core.combine.combine_predictions` keys them."""
    rows = slice(predictions.frames.offsets[frame], predictions.frames.offsets[frame + 1])
    energy = float(scores.energy[frame])
    results: dict[str, Any] = {
        "energy": energy,
        "free_energy": energy,
        "forces": scores.forces[rows],
        "uncertainty": float(scores.uncertainty[frame]),
        "atomic_uncertainty": scores.atomic_uncertainty[rows],
        "energy_std": float(scores.energy_std[frame]),
        "member_energies": predictions.member_energies[frame],
        "member_forces": predictions.member_forces[rows].transpose(1, 0, 2),
        "member_max_deviation": scores.member_max_deviation[frame],
        "most_deviating_member": int(scores.most_deviating[frame]),
    }
    results["member_weights"] = scores.weights if scores.member_weights is None else scores.member_weights[frame]
    results["predictor_weights"] = results["member_weights"]
    if scores.predictors is not None:
        results["member_roles"] = ["predictor" if p else "witness" for p in scores.predictors]
        results["predictor_weights"] = (
            scores.frame_predictor_weights[frame]
            if scores.frame_predictor_weights is not None
            else scores.predictor_weights
        )
    if frame in predictions.dropped:
        results["dropped_members"] = dict(predictions.dropped[frame])
    if scores.stress is not None and np.isfinite(scores.stress[frame]).all():
        results["stress"] = scores.stress[frame]
        results["member_stresses"] = predictions.member_stresses[frame]
    return results


@dataclass
class ReferenceErrors:
    """Errors against reference (DFT) labels, per frame, for F frames and M members.

    Attributes:
        eps: (F,) ``max_i ||F_ref[i] - F[i]||``, the error U tracks, eV/Å,
            with ``F`` the forces hetens returns (the weighted predictor
            mean; ``error_reference="returned"``, the default) or the plain
            mean of the predictors' forces (``"member_mean"``, the paper's
            notebook). The one definition used by ``score``, ``calibrate``
            and ``plot`` (docs/rescoring.md, docs/method.md).
        ensemble_eps: (F,) the same error of the returned forces, whatever
            ``error_reference``, eV/Å.
        energy_error: (F,) ``|E_ensemble - E_ref| / N``, eV/atom.
        member_force_sse: (F, M) sum over atoms and components of
            ``(F_m - F_ref)**2``, (eV/Å)².
        ensemble_force_sse: (F,) the same for the weighted mean forces.
        member_energy_error: (F, M) ``(E_m - E_ref) / N``, eV/atom.
        n_atoms: (F,) atom counts.
    """

    eps: np.ndarray
    ensemble_eps: np.ndarray
    energy_error: np.ndarray
    member_force_sse: np.ndarray
    ensemble_force_sse: np.ndarray
    member_energy_error: np.ndarray
    n_atoms: np.ndarray

    @staticmethod
    def concatenate(parts: list[ReferenceErrors]) -> ReferenceErrors:
        """Join the errors of consecutive chunks of frames."""
        return ReferenceErrors(
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in (
                    "eps",
                    "ensemble_eps",
                    "energy_error",
                    "member_force_sse",
                    "ensemble_force_sse",
                    "member_energy_error",
                    "n_atoms",
                )
            )
        )


def check_error_reference(error_reference: str) -> str:
    """``error_reference`` if it is one of :data:`ERROR_REFERENCES`; ``ValueError`` otherwise."""
    if error_reference not in ERROR_REFERENCES:
        raise ValueError(f"error_reference must be one of {', '.join(ERROR_REFERENCES)}; got {error_reference!r}")
    return error_reference


def error_forces(member_forces: np.ndarray, returned: np.ndarray, predictors=None,
                 error_reference: str = "returned") -> np.ndarray:
    """The forces eps measures the error of, (T, 3) eV/Å.

    Args:
        member_forces: (T, M, 3) every member's forces (NaN where dropped), eV/Å.
        returned: (T, 3) the forces hetens returns (weighted predictor mean), eV/Å.
        predictors: (M,) bool mask of the predictors (``None``: every member).
        error_reference: ``"returned"`` gives ``returned``; ``"member_mean"``
            the unweighted mean of the predictors present on each atom.
    """
    if check_error_reference(error_reference) == "returned":
        return returned
    chosen = member_forces if predictors is None else member_forces[:, np.asarray(predictors, dtype=bool), :]
    present = np.isfinite(chosen).all(axis=2)  # (T, P)
    total = np.where(present[:, :, None], chosen, 0.0).sum(axis=1)
    return total / present.sum(axis=1)[:, None]


def reference_errors(
    predictions: PredictionSet, scores: EnsembleScores, reference: FrameArrays, error_reference: str = "returned"
) -> ReferenceErrors:
    """Errors of the members and of the ensemble against ``reference`` (aligned frames).

    ``error_reference`` chooses the forces ``eps`` is the error of
    (:data:`ERROR_REFERENCES`, :func:`error_forces`). A member dropped from a
    frame has NaN errors there.
    """
    frames = predictions.frames
    starts = frames.offsets[:-1]
    n_atoms = frames.n_atoms
    if np.any(n_atoms == 0):
        raise ValueError(f"{frames.frame_label(int(np.argmin(n_atoms)))} has no atoms")
    ensemble_eps = _ragged_max_error(scores.forces, reference.forces, starts, n_atoms)
    eps = ensemble_eps
    if error_reference != "returned":
        measured = error_forces(predictions.member_forces, scores.forces, scores.predictors, error_reference)
        eps = _ragged_max_error(measured, reference.forces, starts, n_atoms)
    diff = predictions.member_forces - reference.forces[:, None, :]
    sse = np.add.reduceat((diff**2).sum(axis=2), starts, axis=0)
    per_atom = n_atoms.astype(float)
    # A reference without energies still gives force errors; energy errors are then NaN.
    ref_energy = reference.energy if reference.energy is not None else np.full(frames.n_frames, np.nan)
    return ReferenceErrors(
        eps=eps,
        ensemble_eps=ensemble_eps.copy() if eps is ensemble_eps else ensemble_eps,
        energy_error=np.abs(scores.energy - ref_energy) / per_atom,
        member_force_sse=sse,
        ensemble_force_sse=np.add.reduceat(((scores.forces - reference.forces) ** 2).sum(axis=1), starts),
        member_energy_error=(predictions.member_energies - ref_energy[:, None]) / per_atom[:, None],
        n_atoms=n_atoms.copy(),
    )


def _ragged_max_error(
    forces: np.ndarray, reference: np.ndarray, starts: np.ndarray, n_atoms: np.ndarray
) -> np.ndarray:
    """(F,) ``max_i ||forces[i] - reference[i]||`` per frame over concatenated (T, 3) arrays.

    The ragged form of :func:`hetens.core.uncertainty.max_force_error`; every frame needs an atom.
    """
    norms = np.sqrt(((forces - reference) ** 2).sum(axis=1))
    return np.maximum.reduceat(norms, starts) if starts.size else np.zeros(0)
