"""The summary ``hetens score`` prints (and returns as JSON).

Keys (always): ``n_frames``, ``n_atoms`` (total), ``members`` (names, in
order), ``weights`` (name -> normalised weight), ``U_quantiles`` and
``energy_std_quantiles`` (min, p05, p25, p50, p75, p95, max, mean; eV/Å and
eV/atom), and with witnesses ``roles`` (name -> ``predictor``/``witness``;
``weights`` are then the U weights). With reference labels also:
``spearman_rho`` (U vs eps, eps = max force error of the forces hetens
returns),
``spearman_rho_energy`` (energy spread vs the ensemble's per-atom energy
error), ``member_force_rmse`` (eV/Å) and ``member_energy_rmse`` (eV/atom)
keyed by member name, ``ensemble_force_rmse``, ``ensemble_energy_rmse`` and
``eps_quantiles``. Undefined values (a constant U, a reference without
energies) are ``null``. When members were dropped from some frames
(``on_member_error="drop"``): ``dropped_frames`` (name -> frames it gave no
results for), and each member's RMSEs cover the frames it gave results for.

:class:`ScoreSummary` gathers, batch by batch, the few numbers per frame the
summary needs (the same locally and from a cluster's chunks) and makes the
run's :class:`ScoreResult`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hetens.catalogue.u_scale import u_context_lines
from hetens.rescore.metrics import energy_rmse, force_rmse, quantiles, spearman
from hetens.rescore.scoring import ReferenceErrors

__all__ = ["build_report", "format_report", "ScoreResult", "ScoreSummary"]


@dataclass
class ScoreResult:
    """What a scoring run produced.

    Attributes:
        report: the summary (see :func:`build_report`), JSON-ready.
        output: the written file, or ``None``.
        uncertainty: (F,) U per frame, eV/Å.
        n_atoms: (F,) atom counts.
        elapsed_s: wall time of the run, s.
        notes: lines for the user (members left out...).
    """

    report: dict[str, Any]
    output: Path | None
    uncertainty: np.ndarray
    n_atoms: np.ndarray
    elapsed_s: float
    notes: list[str] = field(default_factory=list)


class ScoreSummary:
    """The per-frame numbers of a run, gathered part by part, and the :class:`ScoreResult` they make.

    A part is a batch (live scoring), all frames (``--precomputed``) or a
    cluster chunk (:meth:`arrays` saved by the worker, :meth:`add_arrays`
    in the driver). Memory: three numbers per frame, plus the reference
    errors when there are any.

    Args:
        names: (M,) member names.
        weights: (M,) normalised weights.
        roles: (M,) member roles, or ``None``.
    """

    _ERRORS = "errors."

    def __init__(self, names: Sequence[str], weights, roles: Sequence[str] | None = None):
        self.names, self.weights, self.roles = list(names), np.asarray(weights), roles
        self.uncertainty: list[np.ndarray] = []
        self.n_atoms: list[np.ndarray] = []
        self.energy_std: list[np.ndarray] = []
        self.errors: list[ReferenceErrors] = []
        self.dropped: list[np.ndarray] = []
        self.most_deviating: list[np.ndarray] = []

    @property
    def n_frames(self) -> int:
        return int(sum(part.size for part in self.uncertainty))

    def add(self, predictions, scores, errors: ReferenceErrors | None = None, dropped=None) -> None:
        """One part: its ``PredictionSet``, ``EnsembleScores``, reference errors and (M,) dropped-frame counts."""
        self.uncertainty.append(scores.uncertainty)
        self.n_atoms.append(predictions.frames.n_atoms)
        self.energy_std.append(scores.energy_std)
        self.most_deviating.append(np.bincount(scores.most_deviating, minlength=len(self.names)))
        if errors is not None:
            self.errors.append(errors)
        if dropped is not None:
            self.dropped.append(np.asarray(dropped))

    def arrays(self) -> dict[str, np.ndarray]:
        """The parts joined, as named arrays (what a cluster chunk saves)."""
        arrays = {
            "uncertainty": np.concatenate(self.uncertainty),
            "n_atoms": np.concatenate(self.n_atoms),
            "energy_std": np.concatenate(self.energy_std),
        }
        if self.errors:
            for name, value in vars(ReferenceErrors.concatenate(self.errors)).items():
                arrays[f"{self._ERRORS}{name}"] = value
        if self.dropped:
            arrays["dropped_frames"] = np.sum(self.dropped, axis=0)
        if self.most_deviating:
            arrays["most_deviating_frames"] = np.sum(self.most_deviating, axis=0)
        return arrays

    def add_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """One part saved by :meth:`arrays`."""
        self.uncertainty.append(arrays["uncertainty"])
        self.n_atoms.append(arrays["n_atoms"])
        self.energy_std.append(arrays["energy_std"])
        errors = {k[len(self._ERRORS):]: v for k, v in arrays.items() if k.startswith(self._ERRORS)}
        if errors:
            self.errors.append(ReferenceErrors(**errors))
        if "dropped_frames" in arrays:
            self.dropped.append(arrays["dropped_frames"])
        if "most_deviating_frames" in arrays:
            self.most_deviating.append(arrays["most_deviating_frames"])

    def result(self, output: Path | None, start: float) -> ScoreResult:
        """The :class:`ScoreResult` of a run that began at ``start`` (``time.perf_counter``) and wrote ``output``."""
        u = np.concatenate(self.uncertainty) if self.uncertainty else np.zeros(0)
        n_atoms = np.concatenate(self.n_atoms) if self.n_atoms else np.zeros(0, dtype=np.int64)
        errors = ReferenceErrors.concatenate(self.errors) if self.errors else None
        dropped = np.sum(self.dropped, axis=0) if self.dropped else None
        energy_std = np.concatenate(self.energy_std) if self.energy_std else []
        most_deviating = np.sum(self.most_deviating, axis=0) if self.most_deviating else None
        report = build_report(self.names, self.weights, u, n_atoms, energy_std, errors, dropped, roles=self.roles,
                              most_deviating_frames=most_deviating)
        elapsed = time.perf_counter() - start
        report["elapsed_s"] = round(elapsed, 3)
        report["frames_per_s"] = round(u.size / elapsed, 3) if elapsed > 0 else None
        report["output"] = str(output) if output else None
        return ScoreResult(report=report, output=output, uncertainty=u, n_atoms=n_atoms, elapsed_s=elapsed)


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def build_report(
    names: Sequence[str],
    weights,
    uncertainty,
    n_atoms,
    energy_std,
    errors: ReferenceErrors | None = None,
    dropped_frames=None,
    *,
    roles: Sequence[str] | None = None,
    most_deviating_frames=None,
) -> dict[str, Any]:
    """The score summary as a JSON-ready dict.

    Args:
        names: (M,) member names.
        weights: (M,) normalised weights.
        uncertainty: (F,) U, eV/Å.
        n_atoms: (F,) atom counts.
        energy_std: (F,) energy spread, eV/atom.
        errors: errors against reference labels, or ``None``.
        dropped_frames: (M,) how many frames each member was dropped from, or ``None``.
        roles: (M,) member roles; with a witness among them the report has
            ``roles`` (name -> role) and ``weights`` are the U weights.
        most_deviating_frames: (M,) on how many frames each member contributed
            most to U, or ``None``.
    """
    u = np.asarray(uncertainty, dtype=float)
    report: dict[str, Any] = {
        "n_frames": int(u.size),
        "n_atoms": int(np.sum(n_atoms)),
        "members": list(names),
        "weights": {name: float(w) for name, w in zip(names, weights)},
        **({"roles": dict(zip(names, roles))} if roles is not None and "witness" in roles else {}),
        "U_quantiles": quantiles(u),
        "energy_std_quantiles": quantiles(energy_std),
    }
    if most_deviating_frames is not None:
        report["most_deviating_frames"] = {name: int(k) for name, k in zip(names, most_deviating_frames)}
    if dropped_frames is not None and np.any(dropped_frames):
        report["dropped_frames"] = {name: int(k) for name, k in zip(names, dropped_frames)}
    if errors is None:
        return report
    member_force, member_energy = _member_rmses(errors)
    report.update(
        spearman_rho=spearman(u, errors.eps),
        spearman_rho_energy=None
        if np.isnan(errors.energy_error).any()
        else spearman(energy_std, errors.energy_error),
        member_force_rmse={n: _finite_or_none(v) for n, v in zip(names, member_force)},
        member_energy_rmse={n: _finite_or_none(v) for n, v in zip(names, member_energy)},
        ensemble_force_rmse=float(force_rmse(errors.ensemble_force_sse[:, None], errors.n_atoms)[0]),
        ensemble_energy_rmse=_finite_or_none(float(np.sqrt(np.mean(errors.energy_error**2)))),
        eps_quantiles=quantiles(errors.eps),
    )
    return report


def _member_rmses(errors: ReferenceErrors) -> tuple[np.ndarray, np.ndarray]:
    """(M,) force and energy RMSEs, each member's over the frames it gave results for."""
    sse = errors.member_force_sse
    if np.isfinite(sse).all():
        return force_rmse(sse, errors.n_atoms), energy_rmse(errors.member_energy_error)
    force, energy = np.full(sse.shape[1], np.nan), np.full(sse.shape[1], np.nan)
    for m in range(sse.shape[1]):
        predicted = np.isfinite(sse[:, m])
        if predicted.any():
            force[m] = force_rmse(sse[predicted, m : m + 1], errors.n_atoms[predicted])[0]
            energy[m] = energy_rmse(errors.member_energy_error[predicted, m : m + 1])[0]
    return force, energy


def _number(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines for a :func:`build_report` dict."""
    q = report["U_quantiles"]
    lines = [
        f"{report['n_frames']} frames, {report['n_atoms']} atoms, {len(report['members'])} members",
        "weights: " + ", ".join(
            f"{n} {w:.3f}" + (" (witness)" if report.get("roles", {}).get(n) == "witness" else "")
            for n, w in report["weights"].items()
        ),
        "U [eV/A]: min {} | p25 {} | median {} | p75 {} | p95 {} | max {}".format(
            *(_number(q[k]) for k in ("min", "p25", "p50", "p75", "p95", "max"))
        ),
    ]
    lines += u_context_lines(report["U_quantiles"]["p50"], report["members"], report.get("roles") or {},
                             report.get("most_deviating_frames"), "frames")
    if report.get("dropped_frames"):
        lines.append(
            "dropped (frames): "
            + ", ".join(f"{n} {k}" for n, k in report["dropped_frames"].items() if k)
            + " (their U comes from the members left)"
        )
    if "spearman_rho" in report:
        lines.append(
            f"Spearman rho(U, eps) = {_number(report['spearman_rho'], 3)} "
            "(eps: max force error of the forces hetens returns); "
            f"rho(energy spread, energy error) = {_number(report['spearman_rho_energy'], 3)}"
        )
        width = max(len("ensemble"), *(len(n) for n in report["members"]))
        lines.append(f"{'member'.ljust(width)}  force RMSE [eV/A]  energy RMSE [eV/atom]")
        for name in report["members"]:
            lines.append(
                f"{name.ljust(width)}  {_number(report['member_force_rmse'][name]):>17}  "
                f"{_number(report['member_energy_rmse'][name]):>21}"
            )
        lines.append(
            f"{'ensemble'.ljust(width)}  {_number(report['ensemble_force_rmse']):>17}  "
            f"{_number(report['ensemble_energy_rmse']):>21}"
        )
    return "\n".join(lines)
