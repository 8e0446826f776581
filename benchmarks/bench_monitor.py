"""Cost of monitoring: MD steps per second with the three observers attached against none.

One run, one ensemble (the default offline one), two Langevin trajectories
of the same cell: A with a logger (every step), a flagger (threshold below
every U, so every step writes a frame to disk: the worst case) and a halt
check (threshold above every U), all through ``UncertaintyMonitor``; B with
no observer. Their steps are interleaved one by one (A then B, then B then
A...), so a change in machine load hits both alike. B starts from a
differently rattled structure so the ensemble never reuses A's results.

Prints steps/s of each, the ratio of total step times (monitored / plain,
target <= 1.03), the median of the paired per-step ratios, and the time
spent inside the observers themselves.

    .venv/bin/python benchmarks/bench_monitor.py [--steps 20] [--repeat-cell 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ase.build import bulk

import hetens
from hetens.monitor import UncertaintyMonitor, make_md


def cell(repeat: int, seed: int):
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    return atoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per trajectory")
    parser.add_argument("--repeat-cell", type=int, default=2, help="bcc W cubic cell repeated N times per axis")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    calc = hetens.default_ensemble(device=args.device)
    monitored_atoms, plain_atoms = cell(args.repeat_cell, 42), cell(args.repeat_cell, 43)
    monitored_atoms.calc = plain_atoms.calc = calc
    dyn_m = make_md(monitored_atoms, timestep_fs=2.0, temperature_K=1000.0, seed=3)
    dyn_p = make_md(plain_atoms, timestep_fs=2.0, temperature_K=1000.0, seed=4)
    load = os.getloadavg()[0]
    print(f"ensemble: {', '.join(calc.member_names)} on {args.device}; {len(monitored_atoms)} W atoms; "
          f"{args.steps} timed steps each; load average {load:.1f} on {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monitor = UncertaintyMonitor(dyn_m, log=folder / "u.csv", flag_above=1e-9,
                                     flagged=folder / "f.extxyz", halt_above=1e9)
        inside = [0.0]

        def timed_monitor() -> None:
            start = time.perf_counter()
            monitor()
            inside[0] += time.perf_counter() - start

        dyn_m.attach(timed_monitor, interval=1)
        runs = {"monitored": dyn_m.irun(steps=args.steps + 2), "plain": dyn_p.irun(steps=args.steps + 2)}
        times: dict[str, list[float]] = {"monitored": [], "plain": []}
        # Step 0 (first evaluation) and step 1 are warm-up for both trajectories.
        for name in ("monitored", "plain", "monitored", "plain"):
            next(runs[name])
        inside[0] = 0.0
        for i in range(args.steps):
            order = ("monitored", "plain") if i % 2 == 0 else ("plain", "monitored")
            for name in order:
                start = time.perf_counter()
                next(runs[name])
                times[name].append(time.perf_counter() - start)
        monitor.close()
        assert monitor.flagged == args.steps + 2 and monitor.logger.rows == args.steps + 2

    m, p = sum(times["monitored"]), sum(times["plain"])
    paired = [a / b for a, b in zip(times["monitored"], times["plain"])]
    print(f"plain:      {args.steps / p:8.4f} steps/s  ({p:.2f} s)")
    print(f"monitored:  {args.steps / m:8.4f} steps/s  ({m:.2f} s)")
    print(f"ratio monitored/plain time: {m / p:.4f}  (target <= 1.03); "
          f"median of paired per-step ratios {statistics.median(paired):.4f}")
    print(f"inside the observers: {1e3 * inside[0] / args.steps:.2f} ms per step = "
          f"{100 * inside[0] / m:.3f} % of the monitored step time")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
