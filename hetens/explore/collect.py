"""A campaign's outputs: candidates of all runs (with provenance, deduplicated), the summary table and figure.

- ``candidates.extxyz``: every run's candidates (U in the trust window), each
  with ``hetens_run``, ``hetens_condition``, ``hetens_structure``,
  ``hetens_temperature_K``, ``hetens_pressure_GPa`` besides ``hetens_step``
  and ``hetens_U``; near-duplicates removed (:mod:`hetens.explore.dedup`),
  highest U first, at most ``max_candidates``. ``hetens select`` reads it.
- ``failed.extxyz``: the frames above the window's high level (never candidates).
- ``summary.csv``: one row per run: steps, outcome, U range, trust counts, error.
- ``summary.png``: U range per run, coloured by outcome.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from hetens.io import keys

__all__ = ["collect_campaign", "collect_frames", "write_summary", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ("run", "structure", "formula", "temperature_K", "pressure_GPa", "steps", "seed", "status",
                   "steps_done", "halted_at", "u_min", "u_median", "u_max", "accurate", "candidate", "failed",
                   "candidates_written", "wall_s", "error")


def collect_frames(records: list[dict[str, Any]], name: str) -> list:
    """The frames of file ``name`` in every run's folder, with the run's provenance in ``info``."""
    from ase.io import read

    frames = []
    for record in records:
        path = Path(record["log"]).with_name(name)
        if not path.exists() or path.stat().st_size == 0:
            continue
        for atoms in read(path, ":"):
            atoms.info[keys.RUN_KEY] = record["run"]
            atoms.info[keys.CONDITION_KEY] = record["condition"]
            atoms.info["hetens_structure"] = int(record["structure"])
            atoms.info["hetens_temperature_K"] = float(record["temperature_K"])
            if record.get("pressure_GPa") is not None:
                atoms.info["hetens_pressure_GPa"] = float(record["pressure_GPa"])
            frames.append(atoms)
    return frames


def collect_campaign(result, max_candidates: int | None = None, dedup_tol: float | None = None) -> None:
    """Write ``candidates.extxyz``, ``failed.extxyz``, ``summary.csv`` and ``summary.png`` into ``result.out``
    (each atomically, each rewritten from the runs' files, so a resumed campaign's are complete)."""
    from hetens.explore.dedup import DEFAULT_DEDUP_TOL, select_distinct
    from hetens.io.files import write_frames_atomic

    out = Path(result.out)
    candidates = collect_frames(result.records, "candidates.extxyz")
    u = [float(a.info[keys.U_KEY]) for a in candidates]
    kept = select_distinct(candidates, u, DEFAULT_DEDUP_TOL if dedup_tol is None else dedup_tol, max_candidates)
    chosen = [candidates[i] for i in kept]
    write_frames_atomic(out / "candidates.extxyz", chosen, format="extxyz")
    failed = collect_frames(result.records, "failed.extxyz")
    write_frames_atomic(out / "failed.extxyz", failed, format="extxyz")
    result.candidates, result.failed_frames = len(chosen), len(failed)
    result.files = {"candidates": str(out / "candidates.extxyz"), "failed": str(out / "failed.extxyz"),
                    **write_summary(result.records, out)}
    result.candidates_found = len(candidates)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_summary(records: list[dict[str, Any]], out: Path) -> dict[str, str]:
    """``summary.csv`` and ``summary.png`` in ``out``; returns their paths."""
    from hetens.io.files import atomic_path

    rows = []
    for r in records:
        row = {key: r.get(key) for key in SUMMARY_COLUMNS}
        row["candidates_written"] = r.get("candidates")
        rows.append(row)
    table = out / "summary.csv"
    with atomic_path(table) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for row in rows:
            writer.writerow([_cell(row[k]) for k in SUMMARY_COLUMNS])
    png = out / "summary.png"
    _summary_figure(records, png)
    return {"summary": str(table), "figure": str(png)}


_COLOURS = {"completed": "C0", "halted": "C3", "failed": "0.5", "interrupted": "C1"}


def _summary_figure(records: list[dict[str, Any]], png: Path) -> None:
    """U range (min to max, median marked) per run, coloured by outcome; failed runs marked with an x."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hetens.io.files import atomic_path

    n = len(records)
    fig = Figure(figsize=(max(6.0, 0.35 * n + 2), 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for x, r in enumerate(records):
        status = r.get("status", "failed")
        colour = _COLOURS.get(status, "0.3")
        lo, mid, hi = (r.get(k) for k in ("u_min", "u_median", "u_max"))
        if status == "failed" or hi is None:
            ax.plot([x], [0], "x", color=colour, ms=8, mew=2)
            continue
        ax.plot([x, x], [lo, hi], color=colour, lw=3, solid_capstyle="butt")
        ax.plot([x], [mid], "o", color="white", mec=colour, ms=4)
    for status, colour in _COLOURS.items():
        if any(r.get("status") == status for r in records):
            ax.plot([], [], color=colour, lw=3, label=status)
    ax.set_xticks(np.arange(n), [r["run"] for r in records], rotation=90, fontsize=6)
    ax.set_ylabel("U [eV/Å] (min-max, o median)")
    ax.set_title(f"exploration campaign: {n} runs", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="best")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
