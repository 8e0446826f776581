"""MD step cost of two ensembles side by side: today's default against another.

Builds two ensembles on the same 54-atom bcc W cell (rattled), runs Langevin
steps with each, interleaved one by one (A, B, B, A, ...) so that a change in
machine load hits both alike, and prints the median step time of each and
their ratio. By default A is the five-member PBE+U ensemble that was the
default before witnesses (``hetens.core.ensemble.PREVIOUS_DEFAULT_MEMBERS``) and B
is the current default (``hetens.default_ensemble()``: predictors and
witnesses).

    .venv/bin/python benchmarks/bench_md_step.py [--steps 10] [--repeat-cell 3] [--device cpu]
    .venv/bin/python benchmarks/bench_md_step.py --b-models sevenn:7net-0 chgnet:0.3.0 --b-witnesses chgnet:r2scan
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_monitor import cell  # the same rattled bcc W cell (benchmarks/ is on sys.path when run)

import hetens
from hetens.core.ensemble import DEFAULT_MEMBERS, DEFAULT_WITNESSES, PREVIOUS_DEFAULT_MEMBERS
from hetens.monitor import make_md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed MD steps per ensemble (after 2 warm-up steps)")
    parser.add_argument("--repeat-cell", type=int, default=3, help="bcc cubic cell repeats (3: 54 atoms)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--a-models", nargs="+", default=list(PREVIOUS_DEFAULT_MEMBERS))
    parser.add_argument("--a-witnesses", nargs="*", default=[])
    parser.add_argument("--b-models", nargs="+", default=list(DEFAULT_MEMBERS))
    parser.add_argument("--b-witnesses", nargs="*", default=list(DEFAULT_WITNESSES))
    args = parser.parse_args()

    runs = {}
    for label, models, witnesses, seed in (
        ("A", args.a_models, args.a_witnesses, 1),
        ("B", args.b_models, args.b_witnesses, 2),
    ):
        calc = hetens.HeterogeneousEnsembleCalculator(models, witnesses=witnesses or None, device=args.device)
        atoms = cell(args.repeat_cell, seed)
        atoms.calc = calc
        dyn = make_md(atoms, timestep_fs=2.0, temperature_K=600, dynamics="langevin", seed=seed)
        dyn.run(2)  # warm-up
        runs[label] = (calc, dyn, [])

    order = ["A", "B"]
    for step in range(args.steps):
        for label in order if step % 2 == 0 else order[::-1]:
            _, dyn, times = runs[label]
            start = time.perf_counter()
            dyn.run(1)
            times.append(time.perf_counter() - start)

    n_atoms = len(runs["A"][1].atoms)
    print(f"MD step (Langevin, {n_atoms} atoms, {args.steps} interleaved steps each, device {args.device})")
    medians = {}
    for label, (calc, _, times) in runs.items():
        medians[label] = statistics.median(times)
        roles = calc.roles if hasattr(calc, "roles") else ["predictor"] * len(calc.members)
        n_w = sum(r == "witness" for r in roles)
        print(f"  {label}: {len(calc.members) - n_w} predictors + {n_w} witnesses: "
              f"median {medians[label] * 1e3:8.1f} ms/step   ({', '.join(calc.member_names)})")
    print(f"  ratio B / A: {medians['B'] / medians['A']:.3f}")


if __name__ == "__main__":
    main()
