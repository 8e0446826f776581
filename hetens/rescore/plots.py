"""The figures users of U otherwise script by hand, as PNG files.

- :func:`plot_u_vs_error`: U against the true max force error eps, log-log,
  as a density (a scatter for few frames), with y = x, 10x and 0.1x guides
  and Spearman rho in the legend;
- :func:`plot_u_histogram`: the distribution of U;
- :func:`plot_dft_fraction`: the share of DFT work (atoms and frames)
  against the threshold U_c;
- :func:`plot_u_trajectory`: U (and the largest per-atom u) along a
  trajectory.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global
backend switch); matplotlib is imported only when a plot is made.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetens.errors import FrameReadError
from hetens.rescore.metrics import dft_fractions, spearman

__all__ = [
    "PlotData",
    "load_plot_data",
    "plot_u_vs_error",
    "plot_u_histogram",
    "u_histogram_figure",
    "plot_dft_fraction",
    "plot_u_trajectory",
    "make_plots",
    "PLOT_KINDS",
]

#: Figure kinds: ``u_vs_eps`` (U against the true error eps, file ``u_vs_eps.png``),
#: ``hist``, ``fraction``, ``trajectory``. No kind is called "error": ``plot --json``
#: prints kind -> file, and a key "error" read as a failure.
PLOT_KINDS = ("u_vs_eps", "hist", "fraction", "trajectory")
#: Former kind names still accepted (``--kinds error``).
_KIND_ALIASES = {"error": "u_vs_eps"}
_DENSITY_ABOVE = 400  # frames; fewer are drawn as points


@dataclass
class PlotData:
    """Per-frame quantities read from scored files: (F,) arrays, eV/Å; ``eps`` may be ``None``."""

    uncertainty: np.ndarray
    max_u: np.ndarray
    n_atoms: np.ndarray
    eps: np.ndarray | None


def _figure(width: float = 5.2, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path: str | os.PathLike) -> Path:
    from hetens.io.files import atomic_path

    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png")
    return target


def _positive_floor(values: np.ndarray) -> float:
    positive = values[values > 0]
    return float(positive.min()) / 2 if positive.size else 1e-3


def plot_u_vs_error(u, eps, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """U (y) against the true max force error eps (x), log-log, with y = x, 10x, 0.1x guides.

    Args:
        u: (F,) U, eV/Å.
        eps: (F,) true max force error ``max_i |F_ref[i] - F[i]|``, F the
            forces hetens returns (weighted predictor mean), eV/Å.
        path: PNG to write.
    """
    from matplotlib.colors import LogNorm

    u = np.asarray(u, dtype=float)
    eps = np.asarray(eps, dtype=float)
    rho = spearman(u, eps)
    floor = min(_positive_floor(u), _positive_floor(eps))
    x, y = np.maximum(eps, floor), np.maximum(u, floor)
    low, high = min(x.min(), y.min()) / 1.5, max(x.max(), y.max()) * 1.5
    figure, ax = _figure()
    if u.size > _DENSITY_ABOVE:
        mesh = ax.hexbin(
            x,
            y,
            xscale="log",
            yscale="log",
            gridsize=60,
            mincnt=1,
            cmap="viridis",
            norm=LogNorm(),
            extent=(np.log10(low), np.log10(high), np.log10(low), np.log10(high)),
        )
        figure.colorbar(mesh, ax=ax, label="frames per bin", shrink=0.8)
    else:
        ax.scatter(x, y, s=14, alpha=0.7, color="tab:blue", edgecolors="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
    line = np.array([low, high])
    rho_text = "n/a" if rho is None else f"{rho:.3f}"
    ax.plot(line, line, color="black", lw=1.2, label="y = x")
    ax.plot(line, 10 * line, color="grey", lw=1, ls="--", label="y = 10x, y = 0.1x")
    ax.plot(line, 0.1 * line, color="grey", lw=1, ls="--")
    ax.plot([], [], ls="none", label=f"Spearman ρ = {rho_text} ({u.size} frames)")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("true max force error ε = max$_i$ |F$_{DFT,i}$ − F$_i$| [eV/Å]\n"
                  "(F: the forces hetens returns, weighted predictor mean)", fontsize=9)
    ax.set_ylabel("uncertainty U [eV/Å]")
    ax.set_title(title or "U against the true error")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    ax.grid(True, which="major", alpha=0.3)
    return _save(figure, path)


def _wide(values: np.ndarray) -> bool:
    positive = values[values > 0]
    return positive.size > 1 and positive.max() / positive.min() > 30


def plot_u_histogram(u, path: str | os.PathLike, *, thresholds: Sequence[float] = ()) -> Path:
    """Histogram of U (log-spaced bins when U spans more than ~1.5 decades), thresholds marked.

    Args:
        u: (F,) U per frame, eV/Å.
        path: PNG file (written atomically).
        thresholds: U_c values, eV/Å, each drawn and labelled on its own.
    """
    return _save(u_histogram_figure(u, thresholds=thresholds), path)


def u_histogram_figure(u, *, thresholds: Sequence[float] = ()):
    """The ``Figure`` :func:`plot_u_histogram` saves: integer frame counts on the y axis and
    one legend entry per threshold U_c."""
    from matplotlib.ticker import MaxNLocator

    u = np.asarray(u, dtype=float)
    figure, ax = _figure(5.6, 3.8)
    if _wide(u):
        floor = _positive_floor(u)
        bins = np.logspace(np.log10(floor), np.log10(u.max() * 1.05), 40)
        ax.hist(
            np.maximum(u, floor), bins=bins, color="tab:blue", alpha=0.85, edgecolor="white", linewidth=0.5
        )
        ax.set_xscale("log")
    else:
        n_bins = int(np.clip(np.histogram_bin_edges(u, bins="auto").size - 1, 5, 60))
        ax.hist(u, bins=n_bins, color="tab:blue", alpha=0.85, edgecolor="white", linewidth=0.5)
    styles = ("--", ":", "-.", (0, (5, 2, 1, 2)))
    for k, threshold in enumerate(thresholds):
        ax.axvline(threshold, color=f"C{3 + k % 7}", ls=styles[k % len(styles)], lw=1.2,
                   label=f"U_c = {threshold:g} eV/Å")
    ax.axvline(np.median(u), color="black", lw=1, label=f"median {np.median(u):.3g} eV/Å")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # frame counts are whole numbers
    ax.set_xlabel("uncertainty U [eV/Å]")
    ax.set_ylabel("frames")
    ax.set_title(f"U of {u.size} frames")
    ax.legend(fontsize=8)
    return figure


def plot_dft_fraction(u, n_atoms, path: str | os.PathLike, *, thresholds: Sequence[float] = ()) -> Path:
    """Share of DFT work against U_c: counted in atoms (as in the paper; docs/method.md) and in frames."""
    u = np.asarray(u, dtype=float)
    floor = _positive_floor(u)
    grid = np.logspace(np.log10(floor), np.log10(max(u.max(), floor) * 2), 300)
    curves = dft_fractions(u, n_atoms, grid)
    figure, ax = _figure(5.6, 3.8)
    ax.plot(grid, 100 * curves["dft_fraction_atoms"], color="tab:blue", lw=1.8, label="DFT share of atoms")
    ax.plot(
        grid,
        100 * curves["dft_fraction_frames"],
        color="tab:orange",
        lw=1.2,
        ls="--",
        label="DFT share of frames",
    )
    if len(thresholds):
        marks = dft_fractions(u, n_atoms, thresholds)
        ax.scatter(
            thresholds, 100 * marks["dft_fraction_atoms"], color="tab:red", zorder=3, s=22, label="U_c given"
        )
        for threshold, value in zip(thresholds, marks["dft_fraction_atoms"]):
            ax.annotate(
                f"{100 * value:.1f} %",
                (threshold, 100 * value),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
    ax.set_xscale("log")
    ax.set_ylim(-3, 103)
    ax.set_xlabel("threshold U_c [eV/Å]  (frames with U < U_c: uMLIP labels)")
    ax.set_ylabel("DFT fraction [%]")
    ax.set_title(f"DFT work against U_c ({u.size} frames, {int(np.sum(n_atoms))} atoms)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)


def plot_u_trajectory(
    u, path: str | os.PathLike, *, max_u=None, thresholds: Sequence[float] = (), x=None, xlabel: str = "frame"
) -> Path:
    """U along a trajectory (with the largest per-atom u when given), thresholds as lines."""
    u = np.asarray(u, dtype=float)
    steps = np.arange(u.size) if x is None else np.asarray(x)
    figure, ax = _figure(6.4, 3.6)
    ax.plot(steps, u, color="tab:blue", lw=1.4, label="U", zorder=3)
    if max_u is not None:
        ax.plot(steps, max_u, color="tab:orange", lw=1.0, ls=":", label="max per-atom u", zorder=4)
    for k, threshold in enumerate(thresholds):
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label="U_c" if k == 0 else None)
    if _wide(u):
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("uncertainty [eV/Å]")
    ax.set_title(f"U along the trajectory ({u.size} frames)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)


# ----------------------------------------------------------------- from files


def load_plot_data(
    scored: Sequence[str | os.PathLike],
    *,
    reference: str | os.PathLike | None = None,
    reference_energy_key: str = "energy",
    reference_forces_key: str = "forces",
    index: Any = ":",
    error_reference: str = "returned",
) -> PlotData:
    """U, max u, atom counts and (when known) eps of scored files.

    eps comes from each frame's ``hetens_eps`` (written by ``score
    --reference``, with that run's ``--error-reference``) or, with
    ``reference``, is computed here: ``max_i |F_ref[i] - F[i]|`` with F the
    frame's forces (those hetens returned; ``error_reference="returned"``) or
    the plain mean of the predictors' forces (``"member_mean"``: needs the
    frames' ``hetens_member_forces``, written by ``score --keep-member-forces``).
    """
    from hetens.rescore.scoring import check_error_reference

    if check_error_reference(error_reference) != "returned" and reference is None:
        raise ValueError(f"error_reference={error_reference!r} computes eps from the reference forces: give reference")
    from hetens.io.keys import EPS_KEY, MAX_U_KEY, U_KEY
    from hetens.io.reading import info_float, is_extxyz, iter_frames, scan_extxyz_info

    paths = list(scored)
    u, max_u, n_atoms, eps = [], [], [], []
    if reference is None and all(is_extxyz(p) for p in paths):
        items = ((s, n, info) for p in paths for s, n, info in scan_extxyz_info(p, index))
    else:
        items = ((s, len(a), {**a.info, "_atoms": a}) for s, a in iter_frames(paths, index))
    frames = []
    for source, natoms, info in items:
        if U_KEY not in info:
            raise FrameReadError(f"{source} has no {U_KEY}; plot reads files written by 'hetens score'")
        u.append(info_float(info, U_KEY, source))
        max_u.append(info_float(info, MAX_U_KEY, source, default=np.nan))
        n_atoms.append(natoms)
        eps.append(info_float(info, EPS_KEY, source, default=np.nan))
        if "_atoms" in info:
            frames.append(info["_atoms"])
    eps_array = np.asarray(eps, dtype=float)
    if reference is not None:
        eps_array = _eps_from_reference(
            frames, reference, index, reference_energy_key, reference_forces_key, error_reference
        )
    return PlotData(
        uncertainty=np.asarray(u, dtype=float),
        max_u=np.asarray(max_u, dtype=float),
        n_atoms=np.asarray(n_atoms, dtype=np.int64),
        eps=None if np.isnan(eps_array).any() or eps_array.size == 0 else eps_array,
    )


def _eps_from_reference(frames, reference, index, energy_key, forces_key, error_reference="returned") -> np.ndarray:
    from hetens.core.uncertainty import max_force_error
    from hetens.io.keys import MEMBER_FORCES_KEY, ROLES_KEY
    from hetens.rescore.arrays import frame_arrays_from_atoms
    from hetens.rescore.precomputed import check_alignment, read_frame_arrays
    from hetens.rescore.scoring import error_forces

    labels = read_frame_arrays(
        reference, index, energy_key=energy_key, forces_key=forces_key, require_energy=False
    )
    check_alignment(frame_arrays_from_atoms(frames, path="scored file"), labels)
    eps = np.empty(len(frames))
    for f, atoms in enumerate(frames):
        rows = slice(labels.offsets[f], labels.offsets[f + 1])
        if atoms.calc is not None and "forces" in atoms.calc.results:
            predicted = atoms.calc.results["forces"]
        else:
            raise FrameReadError(f"scored frame {f} has no forces to compare with {reference}")
        if error_reference != "returned":
            if MEMBER_FORCES_KEY not in atoms.arrays:
                raise FrameReadError(
                    f"scored frame {f} has no {MEMBER_FORCES_KEY}: error_reference={error_reference!r} needs "
                    "the members' forces (score with --keep-member-forces)"
                )
            packed = np.asarray(atoms.arrays[MEMBER_FORCES_KEY], dtype=float)
            members = packed.reshape(len(atoms), -1, 3)  # (N, M, 3)
            roles = str(atoms.info.get(ROLES_KEY, "")).split(",") if ROLES_KEY in atoms.info else None
            predictors = None if roles is None else np.array([r == "predictor" for r in roles])
            predicted = error_forces(members, np.asarray(predicted), predictors, error_reference)
        eps[f] = max_force_error(predicted, labels.forces[rows])
    return eps


def make_plots(
    data: PlotData,
    out_dir: str | os.PathLike,
    *,
    kinds: Sequence[str] = PLOT_KINDS,
    thresholds: Sequence[float] = (),
    prefix: str = "",
) -> dict[str, Path]:
    """Write the requested figures into ``out_dir``; return kind -> PNG path.

    ``u_vs_eps`` is skipped (absent from the result) when ``data.eps`` is
    ``None``. The former kind name ``error`` is accepted for ``u_vs_eps``.
    """
    kinds = [_KIND_ALIASES.get(k, k) for k in kinds]
    unknown = [k for k in kinds if k not in PLOT_KINDS]
    if unknown:
        raise ValueError(f"unknown plot kind(s) {', '.join(unknown)}; choose from {', '.join(PLOT_KINDS)}")
    if data.uncertainty.size == 0:
        raise ValueError("no frames to plot")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if "u_vs_eps" in kinds and data.eps is not None:
        written["u_vs_eps"] = plot_u_vs_error(data.uncertainty, data.eps, folder / f"{prefix}u_vs_eps.png")
    if "hist" in kinds:
        written["hist"] = plot_u_histogram(
            data.uncertainty, folder / f"{prefix}u_histogram.png", thresholds=thresholds
        )
    if "fraction" in kinds:
        written["fraction"] = plot_dft_fraction(
            data.uncertainty, data.n_atoms, folder / f"{prefix}dft_fraction.png", thresholds=thresholds
        )
    if "trajectory" in kinds:
        max_u = None if np.isnan(data.max_u).any() else data.max_u
        written["trajectory"] = plot_u_trajectory(
            data.uncertainty, folder / f"{prefix}u_trajectory.png", max_u=max_u, thresholds=thresholds
        )
    return written
