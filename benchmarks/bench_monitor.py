"""Cost of monitoring: MD steps per second with the three observers attached against none.

Same ensemble, same starting structure and seed, same number of steps;
plain and monitored runs are interleaved and repeated, and the medians
compared. The observers are a logger (every step), a flagger (threshold
below every U, so every step writes a frame: the worst case) and a halt
check (threshold above every U). Target ratio (monitored time / plain time)
<= 1.03.

    .venv/bin/python benchmarks/bench_monitor.py [--steps 20] [--repeats 3] [--repeat-cell 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ase.build import bulk

import hetens
from hetens.monitor import UncertaintyMonitor, run_monitored
from hetens.monitor.dynamics import make_md


def run_once(calc, repeat: int, steps: int, monitored: bool, folder: Path) -> float:
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=42)
    atoms.calc = calc
    dyn = make_md(atoms, timestep_fs=2.0, temperature_K=1000.0, seed=3)
    start = time.perf_counter()
    if monitored:
        with UncertaintyMonitor(dyn, log=folder / "u.csv", flag_above=1e-9, flagged=folder / "f.extxyz",
                                halt_above=1e9) as monitor:
            outcome = run_monitored(dyn, steps, monitor)
        assert outcome.completed and outcome.flagged == steps + 1
    else:
        dyn.run(steps)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeat-cell", type=int, default=2, help="bcc W cubic cell repeated N times per axis")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    calc = hetens.default_ensemble(device=args.device)
    n_atoms = 2 * args.repeat_cell**3
    print(f"ensemble: {', '.join(calc.member_names)}; {n_atoms} W atoms, {args.steps} steps per run")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_once(calc, args.repeat_cell, 2, True, folder)  # warm-up
        plain, monitored = [], []
        for _ in range(args.repeats):
            plain.append(run_once(calc, args.repeat_cell, args.steps, False, folder))
            monitored.append(run_once(calc, args.repeat_cell, args.steps, True, folder))
    p, m = statistics.median(plain), statistics.median(monitored)
    print(f"plain:     {args.steps / p:7.3f} steps/s  (median of {args.repeats}: {p:.2f} s)")
    print(f"monitored: {args.steps / m:7.3f} steps/s  (median of {args.repeats}: {m:.2f} s)")
    print(f"ratio monitored/plain time: {m / p:.4f}  (target <= 1.03)")


if __name__ == "__main__":
    main()
