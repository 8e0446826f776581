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

    .venv/bin/python benchmarks/k_study.py [OUT] [--seeds 0 1 2] [--steps 100]
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


def halt_step(steps, u, k: int, threshold: float, consecutive: int = 2) -> int | None:
    """The step at which checks every ``k`` steps halt (``consecutive`` checks in a row above ``threshold``)."""
    streak = 0
    for s, value in zip(steps, u):
        if s % k:
            continue
        streak = streak + 1 if value > threshold else 0
        if streak >= consecutive:
            return int(s)
    return None


def analyse(records: list[dict], threshold: float) -> list[dict]:
    rows = []
    for rec in records:
        steps, u = np.array(rec["step"]), np.array(rec["U"])
        first_cross = next((int(s) for s, v in zip(steps, u) if v > threshold), None)
        for k in KS:
            halt = halt_step(steps, u, k, threshold)
            upto = steps <= (halt if halt is not None else steps[-1])
            checked = upto & (steps % k == 0)
            between = upto & (steps % k != 0)
            rows.append({
                "seed": rec["seed"], "K": k, "halt_step": halt, "first_step_above": first_cross,
                "max_U_checks": float(u[checked].max()),
                "max_U_between": float(u[between].max()) if between.any() else None,
                "steps_above_unseen": int(np.sum(between & (u > threshold))),
            })
    return rows


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


def figure(records: list[dict], rows: list[dict], threshold: float, png: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2 * len(records)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(records), 1, squeeze=False)[:, 0]
    for ax, rec in zip(axes, records):
        steps, u = np.array(rec["step"]), np.array(rec["U"])
        ax.plot(steps, u, color="0.6", lw=1, label="U every step (shadow)")
        for j, k in enumerate(KS[1:]):
            sel = steps % k == 0
            ax.plot(steps[sel], u[sel], "o", ms=3 + 1.5 * j, mfc="none", color=f"C{j}", label=f"checks K={k}")
        for j, k in enumerate(KS):
            halt = next(r["halt_step"] for r in rows if r["seed"] == rec["seed"] and r["K"] == k)
            if halt is not None:
                ax.axvline(halt, color=f"C{j - 1}" if j else "k", ls=":", lw=1)
        ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"halt above {threshold:g}")
        ax.set_title(f"seed {rec['seed']}: CHGNet drives the ramp; dotted: halt step for K = 1 (black), 5, 10, 20",
                     fontsize=8)
        ax.set_ylabel("U [eV/Å]")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    axes[-1].set_xlabel("MD step (2 fs)")
    fig.savefig(png, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="runs/k_study")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100, help="ramp length in steps (examples/01: 150)")
    parser.add_argument("--t-start", type=float, default=300.0)
    parser.add_argument("--t-end", type=float, default=6000.0)
    parser.add_argument("--halt-above", type=float, default=2.0)
    parser.add_argument("--cost", type=float, nargs=4, metavar=("K1", "K5", "K10", "K20"),
                        help="cost per step relative to the full ensemble (from bench_driver.py), for the table")
    parser.add_argument("--from-json", help="re-analyse a k_study.json instead of running")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("load average %.2f %.2f %.2f" % os.getloadavg(), flush=True)
    if args.from_json:
        records = json.loads(Path(args.from_json).read_text())["records"]
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
    text = table(rows, args.halt_above, cost)
    (out / "k_study.md").write_text(text + "\n")
    figure(records, rows, args.halt_above, out / "k_study.png")
    print(text)
    print(f"wrote {out / 'k_study.md'}, {out / 'k_study.png'}")


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
    main()
