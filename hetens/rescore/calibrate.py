"""Calibrate an ensemble on the user's reference data: member errors, weights, top-N, a U bound.

What :func:`calibrate` does, on reference (DFT) labels for F frames and M
members' predictions of them:

1. each member's force RMSE (eV/Å) and per-atom energy RMSE (eV/atom);
2. the paper's scan: members sorted by force RMSE, and for N = 2..M the
   top-N ensemble with inverse-force-RMSE weights, and its Spearman rho
   between U and eps (METHOD.md); the N with the highest rho is chosen
   (the smallest such N on ties);
3. beyond the paper, a split-conformal bound: on a random half of the
   frames, the factor k with ``max_i |F_ref - F_ens| <= k * U`` for the
   requested coverage, and the coverage that k achieves on the other half.

:func:`write_weights_file` saves it as JSON whose ``"weights"`` object holds
the chosen members only, so ``--weights-file`` in ``score``/``md`` and
:func:`hetens.read_weights_file` use the chosen ensemble.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hetens.atomic_io import atomic_path
from hetens.rescore.arrays import FrameArrays, PredictionSet
from hetens.rescore.metrics import conformal_factor, coverage, energy_rmse, force_rmse, spearman, split_frames
from hetens.rescore.scoring import reference_errors, score_predictions
from hetens.weights import inverse_rmse_weights

__all__ = ["CalibrationResult", "calibrate", "write_weights_file", "BOUND_TARGET"]

#: What the conformal bound bounds.
BOUND_TARGET = (
    "max_i |F_ref[i] - F_ensemble[i]|: the max force error of the weighted-mean forces hetens returns"
)


@dataclass
class CalibrationResult:
    """Outcome of :func:`calibrate`; :meth:`to_json` is the weights file's content.

    Attributes:
        members: (M,) member names, sorted by force RMSE (best first).
        force_rmse, energy_rmse: name -> RMSE (eV/Å; eV/atom, ``None``
            without reference energies).
        top_n_scan: one entry per N: ``{"n", "members", "rho", "rho_energy"}``.
        chosen_n: the N with the highest rho.
        weights: name -> normalised inverse-force-RMSE weight of the chosen members.
        calibration: the conformal bound: ``coverage`` (target), ``factor``
            k, ``held_out_coverage``, ``n_calibration``, ``n_held_out``,
            ``target``; ``factor`` is ``None`` (with a ``note``) when there
            are too few frames.
        n_frames, n_atoms: size of the reference set.
        sources: name -> where the member's predictions came from.
    """

    members: list[str]
    force_rmse: dict[str, float]
    energy_rmse: dict[str, float | None]
    top_n_scan: list[dict[str, Any]]
    chosen_n: int
    weights: dict[str, float]
    calibration: dict[str, Any]
    n_frames: int
    n_atoms: int
    sources: dict[str, str] = field(default_factory=dict)
    reference: str = ""

    @property
    def chosen_members(self) -> list[str]:
        return list(self.weights)

    def to_json(self) -> dict[str, Any]:
        from hetens import __version__

        return {
            "weights": dict(self.weights),
            "members": list(self.members),
            "force_rmse": dict(self.force_rmse),
            "energy_rmse": dict(self.energy_rmse),
            "top_n_scan": list(self.top_n_scan),
            "chosen_n": self.chosen_n,
            "calibration": dict(self.calibration),
            "n_frames": self.n_frames,
            "n_atoms": self.n_atoms,
            "reference": self.reference,
            "sources": dict(self.sources),
            "hetens_version": __version__,
        }


def _none_if_nan(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def calibrate(
    predictions: PredictionSet,
    reference: FrameArrays,
    *,
    coverage_target: float = 0.95,
    held_out_fraction: float = 0.5,
    seed: int = 0,
) -> CalibrationResult:
    """Member errors, inverse-RMSE weights, the top-N scan and a conformal U bound.

    Args:
        predictions: M >= 2 members on F frames.
        reference: the frames' reference labels (forces required; energies
            optional), aligned with ``predictions`` (checked by the caller,
            e.g. :func:`hetens.rescore.precomputed.check_alignment`).
        coverage_target: probability the bound ``k * U`` should cover.
        held_out_fraction: share of frames kept aside to measure the coverage.
        seed: seed of the random calibration/held-out split.
    """
    if predictions.n_members < 2:
        raise ValueError("calibration needs at least 2 members: U is 0 for a single model")
    if reference.forces is None:
        raise ValueError(f"reference {reference.path} has no forces; calibration needs reference forces")
    names = predictions.names
    errors = reference_errors(predictions, score_predictions(predictions), reference)
    rmse_f = force_rmse(errors.member_force_sse, errors.n_atoms)
    rmse_e = energy_rmse(errors.member_energy_error)
    if np.any(rmse_f <= 0):
        zero = names[int(np.argmin(rmse_f))]
        raise ValueError(
            f"member {zero} reproduces the reference forces exactly; is its file the reference itself?"
        )
    order = np.argsort(rmse_f, kind="stable")

    scan, best = [], None
    for n in range(2, predictions.n_members + 1):
        chosen = order[:n]
        subset = predictions.subset(chosen)
        weights = inverse_rmse_weights(rmse_f[chosen])
        scores = score_predictions(subset, weights)
        sub_errors = reference_errors(subset, scores, reference)
        rho = spearman(scores.uncertainty, sub_errors.eps)
        rho_energy = (
            None
            if np.isnan(sub_errors.energy_error).any()
            else spearman(scores.energy_std, sub_errors.energy_error)
        )
        scan.append({"n": n, "members": subset.names, "rho": rho, "rho_energy": rho_energy})
        if rho is not None and (best is None or rho > best[0]):
            best = (rho, n, subset, weights, scores, sub_errors)
    if best is None:  # rho undefined everywhere (constant U or eps): keep every member
        n = predictions.n_members
        subset = predictions.subset(order)
        weights = inverse_rmse_weights(rmse_f[order])
        scores = score_predictions(subset, weights)
        best = (None, n, subset, weights, scores, reference_errors(subset, scores, reference))
    _, chosen_n, subset, weights, scores, sub_errors = best

    return CalibrationResult(
        members=[names[i] for i in order],
        force_rmse={names[i]: float(rmse_f[i]) for i in order},
        energy_rmse={names[i]: _none_if_nan(rmse_e[i]) for i in order},
        top_n_scan=scan,
        chosen_n=chosen_n,
        weights={name: float(w) for name, w in zip(subset.names, weights)},
        calibration=_conformal(
            scores.uncertainty, sub_errors.ensemble_eps, coverage_target, held_out_fraction, seed
        ),
        n_frames=predictions.n_frames,
        n_atoms=int(predictions.frames.n_atoms.sum()),
        sources=dict(zip(names, predictions.sources)) if predictions.sources else {},
        reference=reference.path,
    )


def _conformal(u, eps, target: float, held_out_fraction: float, seed: int) -> dict[str, Any]:
    calibration_idx, held_idx = split_frames(u.size, held_out_fraction, seed)
    out: dict[str, Any] = {
        "coverage": target,
        "factor": None,
        "held_out_coverage": None,
        "n_calibration": int(calibration_idx.size),
        "n_held_out": int(held_idx.size),
        "seed": seed,
        "target": BOUND_TARGET,
    }
    try:
        factor = conformal_factor(eps[calibration_idx], u[calibration_idx], target)
    except ValueError as exc:
        out["note"] = str(exc)
        return out
    out["factor"] = factor if np.isfinite(factor) else None
    out["held_out_coverage"] = coverage(eps[held_idx], u[held_idx], factor) if held_idx.size else None
    return out


def write_weights_file(result: CalibrationResult, path: str | os.PathLike) -> Path:
    """Write ``result.to_json()`` atomically; return the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return target


def format_calibration(result: CalibrationResult) -> str:
    """Human-readable summary of a :class:`CalibrationResult`."""
    width = max(len(n) for n in result.members)
    lines = [
        f"{result.n_frames} reference frames, {result.n_atoms} atoms",
        "",
        f"{'member'.ljust(width)}  force RMSE [eV/A]  energy RMSE [eV/atom]",
    ]
    for name in result.members:
        energy = result.energy_rmse[name]
        lines.append(
            f"{name.ljust(width)}  {result.force_rmse[name]:>17.4f}  "
            f"{'n/a' if energy is None else f'{energy:.4f}':>21}"
        )
    lines += ["", "top-N scan (members sorted by force RMSE):"]
    for entry in result.top_n_scan:
        rho = "n/a" if entry["rho"] is None else f"{entry['rho']:.3f}"
        mark = "  <- chosen" if entry["n"] == result.chosen_n else ""
        lines.append(f"  N={entry['n']:<3d} rho(U, eps) = {rho}{mark}")
    lines += ["", "weights: " + ", ".join(f"{n} {w:.3f}" for n, w in result.weights.items())]
    cal = result.calibration
    if cal["factor"] is not None:
        held = cal["held_out_coverage"]
        lines.append(
            f"bound: max force error <= {cal['factor']:.3g} x U for {cal['coverage']:.0%} of frames "
            f"(held-out coverage {'n/a' if held is None else f'{held:.1%}'} on {cal['n_held_out']} frames)"
        )
    else:
        lines.append(f"bound: not fitted ({cal.get('note', 'undefined')})")
    return "\n".join(lines)
