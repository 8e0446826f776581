"""Error metrics, rank correlation, conformal calibration and DFT fractions (pure numpy).

Shapes: F frames, M members. Units: forces and U in eV/Å, energies per atom
in eV/atom. Nothing here reads files or knows about models.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "force_rmse",
    "energy_rmse",
    "spearman",
    "quantiles",
    "split_frames",
    "conformal_factor",
    "coverage",
    "dft_fractions",
]


def force_rmse(member_force_sse, n_atoms) -> np.ndarray:
    """Force RMSE of each member over all atoms and Cartesian components.

    Args:
        member_force_sse: (F, M) per-frame sums of squared force-component
            errors, (eV/Å)².
        n_atoms: (F,) atom counts.

    Returns:
        (M,) RMSE in eV/Å: ``sqrt(sum sse / (3 * sum n_atoms))``.
    """
    sse = np.asarray(member_force_sse, dtype=float)
    components = 3.0 * float(np.sum(n_atoms))
    if components == 0:
        raise ValueError("force RMSE needs at least one atom")
    return np.sqrt(sse.sum(axis=0) / components)


def energy_rmse(member_energy_error) -> np.ndarray:
    """Per-atom energy RMSE of each member.

    Args:
        member_energy_error: (F, M) ``(E_m - E_ref) / N`` in eV/atom.

    Returns:
        (M,) RMSE in eV/atom.
    """
    errors = np.asarray(member_energy_error, dtype=float)
    if errors.shape[0] == 0:
        raise ValueError("energy RMSE needs at least one frame")
    return np.sqrt(np.mean(errors**2, axis=0))


def spearman(x, y) -> float | None:
    """Spearman rank correlation of two (F,) arrays; ``None`` when undefined.

    Undefined means fewer than 3 frames or a constant array (no ranking).
    """
    from scipy.stats import spearmanr

    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman needs two (F,) arrays of equal length; got {a.shape} and {b.shape}")
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    rho = spearmanr(a, b).statistic
    return None if not np.isfinite(rho) else float(rho)


_QUANTILES = {"min": 0.0, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "max": 1.0}


def quantiles(values) -> dict[str, float]:
    """``min, p05, p25, p50, p75, p95, max`` and ``mean`` of a (F,) array (NaN-free)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {key: float("nan") for key in (*_QUANTILES, "mean")}
    q = np.quantile(v, list(_QUANTILES.values()))
    out = {key: float(value) for key, value in zip(_QUANTILES, q)}
    out["mean"] = float(v.mean())
    return out


def split_frames(
    n_frames: int, held_out_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random split of ``range(n_frames)`` into calibration and held-out indices (sorted)."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be between 0 and 1; got {held_out_fraction}")
    order = np.random.default_rng(seed).permutation(n_frames)
    n_held = int(round(n_frames * held_out_fraction))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def _ratios(eps, u) -> np.ndarray:
    eps = np.asarray(eps, dtype=float)
    u = np.asarray(u, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(u > 0, eps / np.where(u > 0, u, 1.0), np.where(eps > 0, np.inf, 0.0))
    return ratio


def conformal_factor(eps, u, coverage: float = 0.95) -> float:
    """Split-conformal factor k such that ``eps <= k * U`` with probability >= ``coverage``.

    For exchangeable frames, taking k as the ``ceil((n + 1) * coverage)``-th
    smallest ratio ``eps / U`` of n calibration frames guarantees the
    coverage on a new frame (marginally, over frames like these).

    Args:
        eps: (n,) true max force errors of calibration frames, eV/Å.
        u: (n,) their U, eV/Å.
        coverage: target probability, in (0, 1).

    Returns:
        k (dimensionless); ``inf`` if a calibration frame has U = 0 and eps > 0
        and it is needed.

    Raises:
        ValueError: too few frames for that coverage (names how many are needed).
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be between 0 and 1; got {coverage}")
    ratio = np.sort(_ratios(eps, u))
    n = ratio.size
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        needed = math.ceil(coverage / (1 - coverage))
        raise ValueError(
            f"{n} calibration frames cannot certify {coverage:.0%} coverage; at least {needed} are needed"
        )
    return float(ratio[rank - 1])


def coverage(eps, u, factor: float) -> float:
    """Fraction of frames with ``eps <= factor * U``."""
    eps = np.asarray(eps, dtype=float)
    if eps.size == 0:
        return float("nan")
    return float(np.mean(eps <= factor * np.asarray(u, dtype=float)))


def dft_fractions(u, n_atoms, thresholds, also_dft=None) -> dict[str, np.ndarray]:
    """Split of frames at each threshold: ``U < U_c`` to the uMLIPs, the rest to DFT.

    Args:
        u: (F,) U per frame, eV/Å.
        n_atoms: (F,) atom counts.
        thresholds: (K,) values of U_c, eV/Å.
        also_dft: (K, F) bool or ``None``: frames queued for DFT at threshold k
            although ``U < U_c`` (``hetens select``'s anchors).

    Returns:
        (K,) arrays: ``n_frames_umlip``, ``n_frames_dft``, ``n_atoms_umlip``,
        ``n_atoms_dft``, ``dft_fraction_atoms`` (docs/method.md:
        ``(total atoms - atoms with U < U_c) / total atoms``) and
        ``dft_fraction_frames``.
    """
    u = np.asarray(u, dtype=float)
    atoms = np.asarray(n_atoms, dtype=np.int64)
    uc = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if u.shape != atoms.shape:
        raise ValueError(f"u and n_atoms must both be (F,); got {u.shape} and {atoms.shape}")
    order = np.argsort(u, kind="stable")
    sorted_u = u[order]
    cumulative_atoms = np.concatenate(([0], np.cumsum(atoms[order])))
    n_umlip = np.searchsorted(sorted_u, uc, side="left")  # frames with U < U_c
    atoms_umlip = cumulative_atoms[n_umlip]
    if also_dft is not None:
        moved = np.asarray(also_dft, dtype=bool) & (u[None, :] < uc[:, None])
        n_umlip = n_umlip - moved.sum(axis=1)
        atoms_umlip = atoms_umlip - (moved * atoms[None, :]).sum(axis=1)
    total_atoms = int(cumulative_atoms[-1])
    n_frames = u.size
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "n_frames_umlip": n_umlip,
            "n_frames_dft": n_frames - n_umlip,
            "n_atoms_umlip": atoms_umlip,
            "n_atoms_dft": total_atoms - atoms_umlip,
            "dft_fraction_atoms": (total_atoms - atoms_umlip) / total_atoms
            if total_atoms
            else np.full(uc.shape, np.nan),
            "dft_fraction_frames": (n_frames - n_umlip) / n_frames if n_frames else np.full(uc.shape, np.nan),
        }
