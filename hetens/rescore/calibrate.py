"""Calibrate an ensemble on the user's reference data: member errors, weights, top-N, a U bound.

What :func:`calibrate` does, on reference (DFT) labels for F frames and M
members' predictions of them:

1. each member's force RMSE (eV/Å) and per-atom energy RMSE (eV/atom);
2. the paper's scan: members sorted by force RMSE, and for N = 2..M the
   top-N ensemble with inverse-force-RMSE weights, and its Spearman rho
   between U and eps (docs/method.md); the N with the highest rho is chosen
   (the smallest such N on ties);
   With witnesses (members whose forces enter U only, docs/witnesses.md)
   the scan runs over the predictors, every witness kept in U, and each
   entry also gives rho without the witnesses;
3. beyond the paper, a split-conformal bound: on a random half of the
   frames, the factor k with ``max_i |F_ref - F_ens| <= k * U`` for the
   requested coverage, and the coverage that k achieves on the other half.

:func:`write_weights_file` saves it as JSON whose ``"weights"`` object holds
the chosen members only (and, with witnesses, a ``"roles"`` object), so
``--weights-file`` in ``score``/``md`` and :func:`hetens.read_weights_file`
use the chosen ensemble.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hetens.io import keys
from hetens.io.files import atomic_path
from hetens.rescore.arrays import FrameArrays, PredictionSet
from hetens.rescore.metrics import conformal_factor, coverage, energy_rmse, force_rmse, spearman, split_frames
from hetens.rescore.scoring import check_error_reference, reference_errors, score_predictions
from hetens.core.weights import inverse_rmse_weights

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
        top_n_scan: one entry per N (predictors): ``{"n", "members", "rho",
            "rho_energy"}``; with witnesses also ``"rho_without_witnesses"``
            (U over the N predictors alone; ``None`` for N = 1), ``members``
            listing the witnesses too and ``rho`` with them.
        chosen_n: the N with the highest rho.
        weights: name -> normalised inverse-force-RMSE weight of the chosen
            members (witnesses included; U weights).
        roles: name -> ``"predictor"``/``"witness"`` of the chosen members;
            empty without witnesses.
        rho_with_witnesses, rho_without_witnesses: rho(U, eps) of the chosen
            ensemble with and without its witnesses (both ``None`` without
            witnesses: see ``top_n_scan``).
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
    roles: dict[str, str] = field(default_factory=dict)
    rho_with_witnesses: float | None = None
    rho_without_witnesses: float | None = None

    @property
    def chosen_members(self) -> list[str]:
        return list(self.weights)

    def to_json(self) -> dict[str, Any]:
        from hetens._version import __version__

        witnessed = {"roles": dict(self.roles),
                     "rho_with_witnesses": self.rho_with_witnesses,
                     "rho_without_witnesses": self.rho_without_witnesses} if self.roles else {}
        return {
            "weights": dict(self.weights),
            **witnessed,
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
            keys.VERSION_KEY: __version__,
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
    witnesses=(),
    error_reference: str = "returned",
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
        witnesses: names of the members that are witnesses (forces in U
            only); the scan runs over the others, every witness kept in U.
        error_reference: what eps (the error rho ranks U against in the scan)
            is the error of: ``"returned"`` forces or the plain
            ``"member_mean"`` (:data:`hetens.rescore.scoring.ERROR_REFERENCES`).
            The conformal bound always covers the returned forces' error.
    """
    from hetens.core.policy import check_member_counts

    check_error_reference(error_reference)

    unknown = [n for n in witnesses if n not in predictions.names]
    if unknown:
        raise ValueError(f"witness(es) {', '.join(unknown)} are not among the members {', '.join(predictions.names)}")
    if predictions.n_members < 2:
        raise ValueError("calibration needs at least 2 members: U is 0 for a single model")
    check_member_counts(["witness" if n in witnesses else "predictor" for n in predictions.names])
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
    is_witness = np.array([n in witnesses for n in names])
    predictor_order = order[~is_witness[order]]
    witness_order = order[is_witness[order]]

    def evaluate(chosen):
        """Scores and errors of the ensemble of members ``chosen`` (predictors first, then witnesses)."""
        subset = predictions.subset(chosen)
        weights = inverse_rmse_weights(rmse_f[chosen])
        mask = ~is_witness[chosen]
        scores = score_predictions(subset, weights, predictors=None if mask.all() else mask)
        return subset, weights, scores, reference_errors(subset, scores, reference, error_reference)

    scan, best = [], None
    first = max(1, 2 - witness_order.size)
    for n in range(first, predictor_order.size + 1):
        chosen = np.concatenate([predictor_order[:n], witness_order])
        subset, weights, scores, sub_errors = evaluate(chosen)
        rho = spearman(scores.uncertainty, sub_errors.eps)
        rho_energy = (
            None
            if np.isnan(sub_errors.energy_error).any()
            else spearman(scores.energy_std, sub_errors.energy_error)
        )
        entry = {"n": n, "members": subset.names, "rho": rho, "rho_energy": rho_energy}
        if witness_order.size:
            entry["rho_without_witnesses"] = _rho_of(evaluate(predictor_order[:n])) if n >= 2 else None
        scan.append(entry)
        if rho is not None and (best is None or rho > best[0]):
            best = (rho, n, subset, weights, scores, sub_errors)
    if best is None:  # rho undefined everywhere (constant U or eps): keep every member
        n = predictor_order.size
        subset, weights, scores, sub_errors = evaluate(np.concatenate([predictor_order, witness_order]))
        best = (None, n, subset, weights, scores, sub_errors)
    _, chosen_n, subset, weights, scores, sub_errors = best
    roles = {name: ("witness" if name in witnesses else "predictor") for name in subset.names}
    chosen_entry = next(e for e in scan if e["n"] == chosen_n) if scan else {}

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
        roles=roles if witness_order.size else {},
        rho_with_witnesses=chosen_entry.get("rho") if witness_order.size else None,
        rho_without_witnesses=chosen_entry.get("rho_without_witnesses") if witness_order.size else None,
    )


def _rho_of(evaluated) -> float | None:
    _, _, scores, errors = evaluated
    return spearman(scores.uncertainty, errors.eps)


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
    def text(rho):
        return "n/a" if rho is None else f"{rho:.3f}"

    witnesses = [n for n, r in result.roles.items() if r == "witness"]
    if witnesses:
        lines += ["", f"top-N scan (predictors sorted by force RMSE; witnesses {', '.join(witnesses)} in U):"]
    else:
        lines += ["", "top-N scan (members sorted by force RMSE):"]
    for entry in result.top_n_scan:
        mark = "  <- chosen" if entry["n"] == result.chosen_n else ""
        without = (f", without witnesses {text(entry['rho_without_witnesses'])}"
                   if "rho_without_witnesses" in entry else "")
        lines.append(f"  N={entry['n']:<3d} rho(U, eps) = {text(entry['rho'])}{without}{mark}")
    if witnesses:
        lines.append(
            f"chosen ensemble: rho(U, eps) = {text(result.rho_with_witnesses)} with its witnesses, "
            f"{text(result.rho_without_witnesses)} without"
        )
    lines += ["", "weights: " + ", ".join(
        f"{n} {w:.3f}" + (" (witness)" if result.roles.get(n) == "witness" else "")
        for n, w in result.weights.items()
    )]
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
