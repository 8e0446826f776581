"""A driver with periodic checks: MD step cost against the full ensemble, and a campaign on local:2.

Part ``cost`` (issue 23's "Done when": ``--driver chgnet:0.3.0 --check-every 10``
at most 0.40 of the full-ensemble step on the 54-atom W cell). The default
ensemble is loaded once; six Langevin trajectories of the same rattled cell
(different seeds, so no result is reused) run side by side: the full ensemble
driving, CHGNet driving with checks every K = 1, 5, 10, 20, and CHGNet alone
(the floor). They are interleaved in blocks of 20 steps (each block holds
exactly 20/K checks), the order rotating every round, so a change in machine
load hits every configuration alike. Prints the mean step time of each and
its ratio to the full ensemble's.

Part ``campaign``: the same 8 short runs (2 structures x 4 temperatures,
``hetens.explore.run_campaign``) one after another here and on ``local:2``,
alternating, each into a fresh folder, wall times including model loading.

Prints ``uptime``'s load average before and after: the machine may be shared.

    .venv/bin/python benchmarks/bench_driver.py [--part cost campaign] [--rounds 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ase.build import bulk


def cell(repeat: int, seed: int):
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    return atoms


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def cost(args) -> None:
    import hetens
    from hetens.monitor import make_md
    from hetens.monitor.driver import CheckedDriverCalculator

    ens = hetens.default_ensemble(device=args.device)
    driver = next(m for m in ens.members if m.name == args.driver)
    configs = {"full ensemble": ens}
    for k in (1, 5, 10, 20):
        configs[f"{args.driver} K={k}"] = CheckedDriverCalculator(ens, args.driver, k)
    configs[f"{args.driver} alone"] = driver.calculator
    runs = {}
    for seed, (label, calc) in enumerate(configs.items()):
        atoms = cell(args.repeat_cell, seed)
        atoms.calc = calc
        dyn = make_md(atoms, timestep_fs=2.0, temperature_K=600, dynamics="langevin", seed=seed)
        dyn.run(1)  # warm-up (and the first check)
        runs[label] = (dyn, [])
    n_atoms = len(cell(args.repeat_cell, 0))
    print(f"{n_atoms} atoms, members {ens.member_names} (roles {ens.roles}); {load()}")
    labels = list(runs)
    for r in range(args.rounds):
        order = labels[r % len(labels):] + labels[:r % len(labels)]
        for label in order:
            dyn, times = runs[label]
            start = time.perf_counter()
            dyn.run(20)
            times.append((time.perf_counter() - start) / 20)
        print(f"round {r + 1}/{args.rounds} done; {load()}", flush=True)
        # the table so far after every round, so a run stopped early still reports what it measured
        full = statistics.mean(runs["full ensemble"][1])
        print(f"\n{'configuration':<24} {'s/step':>8} {'ratio to full':>14}   (rounds {r + 1})")
        for label in labels:
            mean = statistics.mean(runs[label][1])
            print(f"{label:<24} {mean:8.3f} {mean / full:14.3f}")
        print(f"{load()}\n", flush=True)


def campaign(args) -> None:
    from ase.io import write

    from hetens.explore import ExploreSettings, condition_grid, run_campaign

    folder = Path(tempfile.mkdtemp(prefix="bench_explore_"))
    structures = folder / "w.extxyz"
    write(structures, [cell(2, 1), cell(2, 2)])
    conditions = condition_grid([300, 900, 1500, 2100], steps=args.campaign_steps)
    models = args.campaign_models
    settings = ExploreSettings(flag_above=0.2, flag_below=2.0, driver=args.driver, check_every=5)
    print(f"8 runs of {args.campaign_steps} steps, 16 atoms, members {models}, driver {args.driver} K=5; {load()}")
    times: dict[str, list[float]] = {"sequential": [], "local:2": []}
    for r in range(args.campaign_rounds):
        for mode in (("sequential", "local:2") if r % 2 == 0 else ("local:2", "sequential")):
            start = time.perf_counter()
            run_campaign(structures, conditions, folder / f"{mode.replace(':', '')}_{r}", models,
                         settings=settings, cluster=None if mode == "sequential" else mode)
            times[mode].append(time.perf_counter() - start)
            print(f"{mode:<11} {times[mode][-1]:7.1f} s  ({load()})", flush=True)
    seq, par = statistics.mean(times["sequential"]), statistics.mean(times["local:2"])
    print(f"\ncampaign wall time: sequential {seq:.1f} s, local:2 {par:.1f} s, speed-up {seq / par:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=("cost", "campaign"), default=["cost", "campaign"])
    parser.add_argument("--rounds", type=int, default=2, help="blocks of 20 steps per configuration (default 2)")
    parser.add_argument("--repeat-cell", type=int, default=3, help="bcc cubic cell repeats (3: 54 atoms)")
    parser.add_argument("--driver", default="chgnet:0.3.0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--campaign-steps", type=int, default=20)
    parser.add_argument("--campaign-rounds", type=int, default=2)
    parser.add_argument("--campaign-models", nargs="+", default=["sevenn:7net-0", "chgnet:0.3.0"])
    args = parser.parse_args()
    if "cost" in args.part:
        cost(args)
    if "campaign" in args.part:
        campaign(args)


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
    main()
