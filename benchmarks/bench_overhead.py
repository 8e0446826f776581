"""Ensemble overhead: one ensemble evaluation against the sum of its members' own.

For 54- and 250-atom bcc W cells, times (after warm-up, interleaved repeats,
medians) one ``HeterogeneousEnsembleCalculator`` evaluation of energy,
forces and stress against the sum of each member evaluating the same
structure on its own (through its own ASE calculator), and prints the ratio
(target <= 0.85: the ensemble shares or skips work members alone repeat,
through the family adapters' group paths) and each member's own time. Also
prints the time of ``import hetens`` in a fresh interpreter (target < 1 s).

    .venv/bin/python benchmarks/bench_overhead.py [--repeats 7] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np
from ase.build import bulk

import hetens


def import_time() -> float:
    code = "import time; t = time.perf_counter(); import hetens; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(5)]
    return statistics.median(runs)


def cell(repeat: int):
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=42)
    return atoms


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(calc, atoms, repeats: int, rng) -> tuple[float, float]:
    """Median ensemble time and median sum-of-members time, in seconds."""

    def fresh():
        moved = atoms.copy()
        moved.positions += rng.normal(scale=1e-3, size=moved.positions.shape)
        return moved

    def ensemble(structure):
        structure.calc = calc
        structure.get_forces()
        structure.get_stress()

    each: dict[str, list[float]] = {m.name: [] for m in calc.members}

    def members(structure):
        for member in calc.members:
            start = time.perf_counter()
            member.calculator.get_forces(structure)
            member.calculator.get_stress(structure)
            each[member.name].append(time.perf_counter() - start)

    ensemble(fresh())  # warm-up
    members(fresh())
    for times in each.values():
        times.clear()
    ens, mem = [], []
    for _ in range(repeats):
        ens.append(time_once(lambda s=fresh(): ensemble(s)))
        mem.append(time_once(lambda s=fresh(): members(s)))
    alone = ", ".join(f"{name} {statistics.median(t):.3f}" for name, t in each.items())
    print(f"       members alone (median s): {alone}")
    return statistics.median(ens), statistics.median(mem)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    print(f"import hetens: {import_time() * 1000:.0f} ms (target < 1000 ms)")
    calc = hetens.default_ensemble(device=args.device)
    print(f"ensemble: {', '.join(calc.member_names)} on {calc.members[0].device}")
    rng = np.random.default_rng(0)
    print(f"{'atoms':>6} {'ensemble[s]':>12} {'sum members[s]':>15} {'ratio':>7}")
    for repeat in (3, 5):
        atoms = cell(repeat)
        ens, mem = measure(calc, atoms, args.repeats, rng)
        print(f"{len(atoms):>6} {ens:>12.4f} {mem:>15.4f} {ens / mem:>7.3f}  (target <= 0.85)")


if __name__ == "__main__":
    main()
