"""What a check interval K costs in safety: the heating ramp of examples/01 driven by CHGNet.

For each seed, one Langevin trajectory of the 16-atom W cell is driven by
CHGNet 0.3.0 (``CheckedDriverCalculator``) along the example's ramp (target
300 K -> 6000 K, friction 0.05/fs, 2 fs steps), and the whole default
ensemble is evaluated on *every* step (a shadow evaluation that does not act
on the dynamics). The driver's forces propagate whatever K is, so one
trajectory serves every K: for K = 1, 5, 10, 20 the checks are the steps
0, K, 2K..., and the example's halt rule (U > ``--halt-above`` at two
consecutive *checks*) gives the halting step; the every-step record gives the
largest U between the checks up to that step, which a check interval never
sees. The trajectory runs the whole ramp (no halt), so the latest halt of the
largest K is on it. (Strictly, a check-step's forces come from the ensemble's
grouped evaluation, equal to CHGNet's own to float32 rounding; the K-runs'
trajectories differ by that much only.)

Writes ``OUT/k_study.json`` (every step's U and T per seed), ``OUT/k_study.md``
(the table) and ``OUT/k_study.png``.

    .venv/bin/python benchmarks/k_study.py [OUT] [--seeds 0 1 2] [--steps 150] [--levels 1.5 1.8 2.0]
    .venv/bin/python benchmarks/k_study.py OUT --from-json A/k_study.json B/k_study.json --levels ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))

KS = (1, 5, 10, 20)


def trajectory(seed: int, args) -> dict:
    """Every-step U (full ensemble) and T along the CHGNet-driven ramp."""
    from importlib import import_module

    from ase.io import read

    import hetens
    from hetens.monitor import make_md
    from hetens.monitor.driver import CheckedDriverCalculator

    ramp_cls = import_module("01_heat_tungsten_until_halt").TemperatureRamp
    ens = args.ensemble
    atoms = read(HERE.parent / "examples" / "data" / "W_bcc_16.extxyz")
    calc = CheckedDriverCalculator(ens, "chgnet:0.3.0", 1_000_000)  # the driver; the shadow does the U
    atoms.calc = calc
    dyn = make_md(atoms, timestep_fs=2.0, temperature_K=args.t_start, dynamics="langevin",
                  friction_per_fs=0.05, seed=seed)
    ramp = ramp_cls(dyn, args.t_start, args.t_end, args.steps)
    dyn.attach(ramp, interval=1)
    record = {"seed": seed, "step": [], "U": [], "T": []}
    shadow = hetens.HeterogeneousEnsembleCalculator(ens.members)  # the same loaded members, its own results
    shadow.weights = ens.weights

    def observe():
        probe = atoms.copy()
        probe.calc = shadow
        record["step"].append(int(dyn.nsteps))
        record["U"].append(float(shadow.get_uncertainty(probe)))
        record["T"].append(float(atoms.get_temperature()))

    dyn.attach(observe, interval=1)
    start = time.perf_counter()
    dyn.run(args.steps)
    record["wall_s"] = time.perf_counter() - start
    return record


def checks(steps, u, k: int, threshold: float, consecutive: int = 2, confirm: bool = True):
    """Which steps are checked, and the halting step, with checks every ``k`` steps.

    The halt rule is ``consecutive`` checks in a row above ``threshold``. With
    ``confirm`` (what hetens does) a check above the threshold makes the next
    step a check too; without it (DeePMD's ``out_freq``) the checks stay on
    the schedule 0, k, 2k... Returns ``(checked, halt)``: a boolean mask over
    ``steps`` (up to the halt) and the halting step or ``None``.
    """
    checked = np.zeros(len(steps), dtype=bool)
    streak, dense = 0, False
    for i, (s, value) in enumerate(zip(steps, u)):
        if not (s % k == 0 or dense):
            continue
        checked[i] = True
        streak = streak + 1 if value > threshold else 0
        if streak >= consecutive:
            return checked, int(s)
        dense = confirm and streak > 0
    return checked, None


def halt_step(steps, u, k: int, threshold: float, consecutive: int = 2, confirm: bool = True) -> int | None:
    """The step at which checks every ``k`` steps halt (see :func:`checks`)."""
    return checks(steps, u, k, threshold, consecutive, confirm)[1]


def analyse(records: list[dict], threshold: float, confirm: bool = True) -> list[dict]:
    """Per seed and K: the halt step, the first step above, and the largest U at and between checks."""
    rows = []
    for rec in records:
        steps, u = np.array(rec["step"]), np.array(rec["U"])
        first_cross = next((int(s) for s, v in zip(steps, u) if v > threshold), None)
        for k in KS:
            checked, halt = checks(steps, u, k, threshold, confirm=confirm)
            upto = steps <= (halt if halt is not None else steps[-1])
            between = upto & ~checked
            rows.append({
                "seed": rec["seed"], "K": k, "halt_step": halt, "first_step_above": first_cross,
                "max_U_checks": float(u[checked].max()),
                "max_U_between": float(u[between].max()) if between.any() else None,
                "steps_above_unseen": int(np.sum(between & (u > threshold))),
            })
    return rows


def summarise(records: list[dict], levels: list[float]) -> list[dict]:
    """Per halt level, rule and K, over the seeds: how often and how late checks every K steps halt.

    Rules: ``confirm`` (hetens: a check above the level is followed by a check
    on the next step) and ``schedule`` (checks only every K steps, as DeePMD's
    ``out_freq``). The reference is K = 1 (every step checked). For each level,
    ``reference_halts`` counts the seeds whose K = 1 rule halts; ``halted``
    how many of those K also halts; ``delay`` the steps K's halt comes after
    K = 1's (median and max over those seeds; negative where K halts first,
    on two checks above with a dip between them); ``missed`` the seeds where
    K = 1 halts and K never does; ``extra`` the seeds where K halts and K = 1
    does not (U above at two checks K steps apart, below in between);
    ``unseen_overshoot`` the median of (max U between checks - max U at
    checks) up to the halt (or the end), eV/A; ``checks_per_step`` the mean
    fraction of steps checked up to the halt (the cost's ensemble share).
    """
    rows = []
    for level in levels:
        reference = {rec["seed"]: halt_step(rec["step"], rec["U"], 1, level) for rec in records}
        for rule in ("confirm", "schedule"):
            for k in KS:
                delays, overshoot, fractions, missed, extra = [], [], [], 0, 0
                for rec in records:
                    steps, u = np.array(rec["step"]), np.array(rec["U"])
                    checked, halt = checks(steps, u, k, level, confirm=rule == "confirm")
                    ref = reference[rec["seed"]]
                    if ref is not None and halt is not None:
                        delays.append(halt - ref)
                    missed += ref is not None and halt is None
                    extra += ref is None and halt is not None
                    upto = steps <= (halt if halt is not None else steps[-1])
                    between = upto & ~checked
                    fractions.append(float(checked.sum() / upto.sum()))
                    if between.any():
                        overshoot.append(float(u[between].max() - u[checked].max()))
                rows.append({
                    "level": level, "rule": rule, "K": k, "seeds": len(records),
                    "reference_halts": sum(h is not None for h in reference.values()),
                    "halted": len(delays), "missed": int(missed), "extra": int(extra),
                    "delay_median": float(np.median(delays)) if delays else None,
                    "delay_max": int(max(delays)) if delays else None,
                    "unseen_overshoot": float(np.median(overshoot)) if overshoot else None,
                    "checks_per_step": float(np.mean(fractions)),
                })
    return rows


def summary_table(rows: list[dict], cost: dict[int, float] | None) -> str:
    lines = ["| halt above | checks | K | seeds halting at K = 1 | of those, halting at K | missed | "
             "halting where K = 1 does not | halt delay vs K = 1, median / max (steps) | "
             "median max-U between checks minus at checks | checks per step |"
             + (" cost / full step |" if cost else ""),
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if cost else "")]
    for r in rows:
        if r["K"] == 1 and r["rule"] == "schedule":
            continue  # the same as K = 1 confirmed
        delay = "-" if r["delay_median"] is None else f"{r['delay_median']:g} / {r['delay_max']}"
        over = "-" if r["unseen_overshoot"] is None else f"{r['unseen_overshoot']:+.3f}"
        rule = "every step" if r["K"] == 1 else {"confirm": "hetens (confirmed next step)",
                                                 "schedule": "fixed schedule"}[r["rule"]]
        lines.append(f"| {r['level']:g} | {rule} | {r['K']} | {r['reference_halts']} of {r['seeds']} | "
                     f"{r['halted']} | {r['missed']} | {r['extra']} | {delay} | {over} | {r['checks_per_step']:.3f} |"
                     + (f" {cost[r['K']]:.2f} |" if cost else ""))
    return "\n".join(lines)


def table(rows: list[dict], threshold: float, cost: dict[int, float] | None) -> str:
    lines = [f"| seed | K | halt step | first step with U > {threshold:g} | max U at checks | "
             "max U between checks | steps above between checks |" + (" cost / full step |" if cost else ""),
             "|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if cost else "")]
    for r in rows:
        between = "-" if r["max_U_between"] is None else f"{r['max_U_between']:.3f}"
        lines.append(f"| {r['seed']} | {r['K']} | {r['halt_step'] if r['halt_step'] is not None else 'none'} | "
                     f"{r['first_step_above']} | {r['max_U_checks']:.3f} | {between} | {r['steps_above_unseen']} |"
                     + (f" {cost[r['K']]:.2f} |" if cost else ""))
    return "\n".join(lines)


def figure(records: list[dict], summary: list[dict], threshold: float, png: Path) -> None:
    """Top: U every step along up to three seeds' ramps (those reaching the highest U), the checks of
    K = 10 and the halt steps. Bottom: over all seeds and per level, the halt delay against K = 1 and
    the share of halts missed, hetens' confirmed checks (solid) against a fixed schedule (dashed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = sorted(records, key=lambda r: -max(r["U"]))[:3]
    fig = Figure(figsize=(9, 2.3 * len(shown) + 3.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(shown) + 1, 2, height_ratios=[1] * len(shown) + [1.4])
    for i, rec in enumerate(shown):
        ax = fig.add_subplot(grid[i, :])
        steps, u = np.array(rec["step"]), np.array(rec["U"])
        ax.plot(steps, u, color="0.6", lw=1, label="U every step (shadow)")
        checked, halt10 = checks(steps, u, 10, threshold)
        ax.plot(steps[checked], u[checked], "o", ms=5, mfc="none", color="C0", label="checks, K = 10")
        for k, confirm, color, text in ((1, True, "k", "K = 1"), (10, True, "C0", "K = 10"),
                                        (10, False, "C1", "K = 10, fixed schedule")):
            halt = halt_step(steps, u, k, threshold, confirm=confirm)
            if halt is not None:
                ax.axvline(halt, color=color, ls=":", lw=1.3, label=f"halt, {text}")
        ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"halt above {threshold:g} (2 checks in a row)")
        ax.set_title(f"seed {rec['seed']}: CHGNet drives the ramp 300 -> 6000 K", fontsize=8)
        ax.set_ylabel("U [eV/Å]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, ncol=3, loc="upper left")
    ax.set_xlabel("MD step (2 fs)")
    levels = sorted({r["level"] for r in summary})
    ax_delay, ax_missed = fig.add_subplot(grid[-1, 0]), fig.add_subplot(grid[-1, 1])
    for j, level in enumerate(levels):
        for rule, style in (("confirm", "o-"), ("schedule", "s--")):
            rows = [r for r in summary if r["level"] == level and r["rule"] == rule]
            ks = [r["K"] for r in rows]
            label = f"U > {level:g}" + (" (confirmed)" if rule == "confirm" else " (fixed)")
            ax_delay.plot(ks, [np.nan if r["delay_max"] is None else r["delay_max"] for r in rows],
                          style, color=f"C{j + 2}", ms=4, label=label)
            ax_missed.plot(ks, [r["missed"] / r["reference_halts"] if r["reference_halts"] else np.nan
                                for r in rows], style, color=f"C{j + 2}", ms=4,
                           label=label + f", {rows[0]['reference_halts']} runs")
    ax_delay.set_ylabel("latest halt after K = 1's (steps)")
    ax_missed.set_ylabel("runs halting at K = 1\nthat K never halts (fraction)")
    for ax in (ax_delay, ax_missed):
        ax.set_xlabel("check interval K (steps)")
        ax.set_xticks(KS)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.savefig(png, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="runs/k_study")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150, help="ramp length in steps (default 150, as examples/01)")
    parser.add_argument("--t-start", type=float, default=300.0)
    parser.add_argument("--t-end", type=float, default=6000.0)
    parser.add_argument("--halt-above", type=float, default=2.0, help="the level of the per-seed table and the traces")
    parser.add_argument("--levels", type=float, nargs="+",
                        help="halt levels of the summary over seeds, eV/A (default: --halt-above only)")
    parser.add_argument("--cost", type=float, nargs=4, metavar=("K1", "K5", "K10", "K20"),
                        help="cost per step relative to the full ensemble (from bench_driver.py), for the table")
    parser.add_argument("--from-json", nargs="+",
                        help="re-analyse k_study.json files instead of running (several: their seeds together)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("load average %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    if args.from_json:
        by_seed = {}
        for path in args.from_json:
            for rec in json.loads(Path(path).read_text())["records"]:
                by_seed.setdefault(rec["seed"], rec)  # the first file's record of a seed wins
        records = [by_seed[seed] for seed in sorted(by_seed)]
    else:
        import hetens

        args.ensemble = hetens.default_ensemble(device="cpu")
        records = []
        for seed in args.seeds:
            records.append(trajectory(seed, args))
            print(f"seed {seed}: {len(records[-1]['U'])} steps in {records[-1]['wall_s']:.0f} s; "
                  "load average %.2f %.2f %.2f" % os.getloadavg(), flush=True)
            # after every seed, so an interrupted study keeps the seeds done (--from-json)
            (out / "k_study.json").write_text(json.dumps({"args": {k: v for k, v in vars(args).items()
                                                                   if k != "ensemble"}, "records": records}))
    rows = analyse(records, args.halt_above)
    cost = dict(zip(KS, args.cost)) if args.cost else None
    summary = summarise(records, args.levels or [args.halt_above])
    text = (f"Over {len(records)} seeds:\n\n" + summary_table(summary, cost)
            + f"\n\nPer seed, halt above {args.halt_above:g}:\n\n" + table(rows, args.halt_above, None))
    (out / "k_study.md").write_text(text + "\n")
    (out / "k_study_summary.json").write_text(json.dumps(summary, indent=1))
    figure(records, summary, args.halt_above, out / "k_study.png")
    print(text)
    print(f"wrote {out / 'k_study.md'}, {out / 'k_study.png'}")


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
    main()
