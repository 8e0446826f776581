"""A PNG of U (and temperature) against time from an uncertainty log.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global
backend switch), imported only when a plot is made.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hetens.io.files import atomic_path
from hetens.monitor.csvlog import read_log

__all__ = ["plot_log", "log_figure"]


def plot_log(
    log: str | os.PathLike,
    png: str | os.PathLike | None = None,
    *,
    flag_above: float | None = None,
    halt_above: float | None = None,
    halted_at: int | None = None,
    title: str | None = None,
    target_temperature: float | None = None,
    target_label: str = "target",
) -> Path:
    """Plot U and max per-atom u (top) and temperature (bottom, MD only) from a log.

    Args:
        log: an uncertainty CSV written by :class:`~hetens.monitor.UncertaintyLogger`.
        png: output path; default: the log's path with ``.png``.
        flag_above, halt_above: thresholds (eV/Å) drawn as dashed lines.
        halted_at: step (``dyn.nsteps``) at which the run halted, marked with a cross.
        title: figure title; default: the log's file name.
        target_temperature: thermostat target, K, drawn as a dashed line on the
            temperature panel with a note: a run started from a lattice with
            Maxwell-Boltzmann velocities at the target first settles near half
            of it (equipartition moves half the kinetic energy into the
            potential), then a thermostat brings it up; NVE stays near half.
        target_label: the line's label (``"start"`` for NVE, which has no target).

    A log of one row (a run halted at its first step) is drawn with markers
    and an x-axis of ±1 fs (or step) around it.

    Returns:
        The PNG path (written atomically).
    """
    png = Path(png) if png is not None else Path(log).with_suffix(".png")
    fig = log_figure(log, flag_above=flag_above, halt_above=halt_above, halted_at=halted_at,
                     title=title, target_temperature=target_temperature, target_label=target_label)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    return png


def log_figure(
    log: str | os.PathLike,
    *,
    flag_above: float | None = None,
    halt_above: float | None = None,
    halted_at: int | None = None,
    title: str | None = None,
    target_temperature: float | None = None,
    target_label: str = "target",
):
    """The matplotlib ``Figure`` that :func:`plot_log` saves (same arguments, no file written)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = read_log(log)
    has_time = data["time_fs"].size > 0 and np.isfinite(data["time_fs"]).all()
    has_t = data["T"].size > 0 and np.isfinite(data["T"]).any()
    x = data["time_fs"] if has_time else data["step"].astype(float)
    xlabel = "time [fs]" if has_time else "optimizer step"

    fig = Figure(figsize=(8, 5.5 if has_t else 4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if has_t else 1, 1, sharex=True, squeeze=False)[:, 0]
    # Few points: markers, so a single observation (a halt at step 0) is visible.
    marker = {"marker": "o", "ms": 4} if x.size < 10 else {}
    ax = axes[0]
    checked = np.isfinite(data["U"])
    if checked.all():
        ax.plot(x, data["U"], color="C0", lw=1.5, label="U", **marker)
        ax.plot(x, data["max_u"], color="0.45", lw=1.0, ls=":", label="max per-atom u", **marker)
    else:  # a driver run: U only at its check steps, drawn as points joined by a thin line
        every = int(np.median(np.diff(data["step"][checked]))) if checked.sum() > 1 else 0
        label = f"U at checks (every {every} steps)" if every else "U at checks"
        ax.plot(x[checked], data["U"][checked], color="C0", lw=0.8, marker="o", ms=3, label=label)
        ax.plot(x[checked], data["max_u"][checked], color="0.45", lw=0.8, ls=":", marker=".", ms=3,
                label="max per-atom u")
    if flag_above is not None:
        ax.axhline(flag_above, color="C1", ls="--", lw=1, label=f"flag above {flag_above:g}")
    if halt_above is not None:
        ax.axhline(halt_above, color="C3", ls="--", lw=1, label=f"halt above {halt_above:g}")
    if halted_at is not None and halted_at in set(data["step"].tolist()):
        i = int(np.flatnonzero(data["step"] == halted_at)[-1])
        ax.plot([x[i]], [data["U"][i]], "x", color="C3", ms=10, mew=2, label=f"halted (step {halted_at})")
    ax.set_ylabel("U [eV/Å]")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title if title is not None else Path(log).name, fontsize=10)
    if has_t:
        axes[1].plot(x, data["T"], color="C2", lw=1.2, label="T", **marker)
        if target_temperature is not None:
            axes[1].axhline(target_temperature, color="0.3", ls="--", lw=1,
                            label=f"{target_label} {target_temperature:g} K")
            axes[1].set_title("started from a lattice, T first settles near half the start temperature "
                              "(equipartition)", loc="left", fontsize=7, color="0.3")
            axes[1].legend(loc="upper right", fontsize=8)
        axes[1].set_ylabel("T [K]")
        axes[1].grid(alpha=0.3)
    if x.size == 1:
        axes[-1].set_xlim(x[0] - 1.0, x[0] + 1.0)
    axes[-1].set_xlabel(xlabel)
    return fig
