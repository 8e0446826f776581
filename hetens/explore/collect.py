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


def collect_campaign(result, max_candidates: int | None = None, dedup_tol: float | None = None,
                     window: dict[str, float | None] | None = None) -> None:
    """Write ``candidates.extxyz``, ``failed.extxyz``, ``summary.csv`` and ``summary.png`` into ``result.out``
    (each atomically, each rewritten from the runs' files, so a resumed campaign's are complete).

    ``window``: the levels drawn on the figure, eV/Å (``flag_above``, ``flag_below``, ``halt_above``)."""
    from hetens.explore.dedup import DEFAULT_DEDUP_TOL, select_distinct
    from hetens.io.files import write_frames_atomic

    out = Path(result.out)
    candidates = collect_frames(result.records, "candidates.extxyz")
    u = [float(a.info[keys.U_KEY]) for a in candidates]
    # All distinct ones first (the cap then keeps the highest-U of them: the same greedy order), so the
    # summary can say how many were near-duplicates and how many the cap left out.
    distinct = select_distinct(candidates, u, DEFAULT_DEDUP_TOL if dedup_tol is None else dedup_tol)
    kept = distinct if max_candidates is None else distinct[:max_candidates]
    chosen = [candidates[i] for i in kept]
    write_frames_atomic(out / "candidates.extxyz", chosen, format="extxyz")
    failed = collect_frames(result.records, "failed.extxyz")
    write_frames_atomic(out / "failed.extxyz", failed, format="extxyz")
    result.candidates, result.failed_frames = len(chosen), len(failed)
    result.files = {"candidates": str(out / "candidates.extxyz"), "failed": str(out / "failed.extxyz"),
                    **write_summary(result.records, out, window)}
    result.candidates_found, result.candidates_distinct = len(candidates), len(distinct)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_summary(records: list[dict[str, Any]], out: Path,
                  window: dict[str, float | None] | None = None) -> dict[str, str]:
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
    _summary_figure(records, png, window or {})
    return {"summary": str(table), "figure": str(png)}


_COLOURS = {"completed": "C0", "halted": "C3", "failed": "0.5", "interrupted": "C1"}
#: Up to this many runs the left panel names each run on its axis.
_NAMED_RUNS = 40


def _condition_key(r: dict[str, Any]) -> str:
    text = f"{r.get('temperature_K', 0):g} K"
    if r.get("pressure_GPa") is not None:
        text += f", {r['pressure_GPa']:g} GPa"
    return text + f"\n{r.get('steps')} st, s{r.get('seed')}"


def _summary_figure(records: list[dict[str, Any]], png: Path, window: dict[str, float | None]) -> None:
    """Two panels that stay readable from 1 to thousands of runs.

    Left: every run's U range (min to max, median marked), runs ordered by their
    largest U, coloured by outcome, failed runs as x at the bottom; the trust
    window and the halt level as lines. Right: per condition, the checked frames
    of all its runs sorted into accurate / candidate / failed (stacked), with
    the halted and failed runs counted above each bar.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hetens.io.files import atomic_path

    n = len(records)
    conditions = list(dict.fromkeys(_condition_key(r) for r in records))
    named = n <= _NAMED_RUNS
    fig = Figure(figsize=(min(max(8.0, 0.3 * n + 4), 14.0) if named else 11.0, 4.6), dpi=110,
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax, bars = fig.subplots(1, 2, width_ratios=[2, max(1, min(len(conditions), 12)) / 4 + 0.6])
    done = [r for r in records if r.get("status") != "failed" and r.get("u_max") is not None]
    drawn = {id(r) for r in done}
    broken = [r for r in records if id(r) not in drawn]
    order = sorted(done, key=lambda r: float(r["u_max"])) + broken
    highs = [float(r["u_max"]) for r in done]
    lows = [float(r["u_min"]) for r in done if float(r["u_min"]) > 0]
    log = bool(highs and lows and max(highs) / min(lows) > 100)
    floor = min(lows) if log else 0.0
    for x, r in enumerate(order):
        colour = _COLOURS.get(r.get("status", "failed"), "0.3")
        if id(r) not in drawn:
            ax.plot([x], [floor], "x", color=colour, ms=7, mew=2, clip_on=False)
            continue
        lo, mid, hi = (float(r[k]) for k in ("u_min", "u_median", "u_max"))
        if named or n <= 200:
            ax.plot([x, x], [max(lo, floor), hi], color=colour, lw=3 if named else 1.5, solid_capstyle="butt")
            ax.plot([x], [mid], "o", color="white", mec=colour, ms=4 if named else 2)
        else:
            ax.plot([x], [hi], ".", color=colour, ms=3)
    if log:
        ax.set_yscale("log")
    for key, style, text in (("flag_above", "--", "candidate above"), ("flag_below", "-.", "failed above"),
                             ("halt_above", ":", "halt above")):
        if window.get(key) is not None:
            ax.axhline(float(window[key]), color="k", ls=style, lw=0.9, label=f"{text} {window[key]:g}")
    for status, colour in _COLOURS.items():
        if any(r.get("status", "failed") == status for r in records):
            ax.plot([], [], color=colour, lw=3, label=f"{status} ({sum(r.get('status') == status for r in records)})")
    if named:
        ax.set_xticks(np.arange(n), [r["run"] for r in order], rotation=90, fontsize=6)
    else:
        ax.set_xlabel(f"{n} runs, ordered by their largest U" + ("" if n <= 200 else " (dots: largest U)"))
    ax.set_ylabel("U [eV/Å] (min-max, o median)")
    ax.set_title(f"exploration campaign: {n} runs, {len(conditions)} conditions", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left")
    counts = {level: [] for level in ("accurate", "candidate", "failed")}
    stopped = []
    for c in conditions:
        runs = [r for r in records if _condition_key(r) == c]
        for level in counts:
            counts[level].append(sum(int(r.get(level) or 0) for r in runs))
        stopped.append((sum(r.get("status") == "halted" for r in runs), sum(r.get("status") == "failed" for r in runs)))
    x = np.arange(len(conditions))
    bottom = np.zeros(len(conditions))
    if any(sum(v) for v in counts.values()):
        for level, colour in (("accurate", "C2"), ("candidate", "C1"), ("failed", "C3")):
            values = np.array(counts[level], dtype=float)
            bars.bar(x, values, bottom=bottom, color=colour, label=f"{level} frames")
            bottom += values
        for xi, (halted, failed) in zip(x, stopped):
            if halted or failed:
                text = "\n".join(f"{count} run{'s' * (count > 1)} {word}"
                                  for count, word in ((halted, "halted"), (failed, "failed")) if count)
                bars.text(xi, bottom[xi], text, ha="center", va="bottom", fontsize=6)
        bars.set_ylabel("checked frames, all runs")
        bars.set_title("per condition", fontsize=9)
    else:  # no trust window: the runs' outcomes per condition
        for status, colour in _COLOURS.items():
            values = np.array([sum(r.get("status", "failed") == status for r in records if _condition_key(r) == c)
                               for c in conditions], dtype=float)
            if values.any():
                bars.bar(x, values, bottom=bottom, color=colour, label=status)
                bottom += values
        bars.set_ylabel("runs")
        bars.set_title("per condition (no trust window)", fontsize=9)
    bars.set_xticks(x, conditions, rotation=90 if len(conditions) > 6 else 0, fontsize=6)
    bars.set_ylim(0, max(float(bottom.max()), 1.0) * 1.4)  # room above the bars for the counts and the legend
    bars.legend(fontsize=7, loc="upper left")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
