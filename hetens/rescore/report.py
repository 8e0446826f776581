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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hetens.rescore.metrics import energy_rmse, force_rmse, quantiles, spearman
from hetens.rescore.scoring import ReferenceErrors

__all__ = ["build_report", "format_report"]


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
