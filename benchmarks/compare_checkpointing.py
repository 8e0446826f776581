"""The default ensemble with and without activation checkpointing on one structure: max |ΔF|.

One process, the same members: a rattled bcc W cube (``--repeat`` cubic cells) evaluated
plain (every member's ``checkpoint_min_atoms`` out of reach), then with every member
checkpointing, then plain again (the plain evaluation's own call-to-call spread: DIEP's
multithreaded scatter sums vary in the 7th digit unless ``--deterministic``). Prints wall
seconds per evaluation and one JSON line: energy difference, max |ΔF| against the plain
evaluation and between the two plain ones, max U of each.

    .venv/bin/python benchmarks/compare_checkpointing.py --repeat 9 --deterministic
    .venv/bin/python benchmarks/compare_checkpointing.py --repeat 11

Sizes: 7 -> 686, 9 -> 1458, 11 -> 2662 atoms (plain, the ensemble peaks near 3.2 MB per atom).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import numpy as np
from ase.build import bulk

import hetens
from hetens.families._common import deterministic_torch

NEVER_IN_REACH = 10**9


def evaluate(calc, atoms, checkpoint: bool) -> tuple:
    for member in calc.members:
        member.calculator.checkpoint_min_atoms = 0 if checkpoint else NEVER_IN_REACH
        member.calculator.reset()
    calc.reset()
    atoms = atoms.copy()
    atoms.calc = calc
    start = time.perf_counter()
    forces = atoms.get_forces().copy()
    seconds = time.perf_counter() - start
    return atoms.get_potential_energy(), forces, float(calc.results["uncertainty"]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="cubic bcc cells per side (default 9: 1458 atoms)")
    parser.add_argument("--deterministic", action="store_true", help="torch's deterministic kernels")
    args = parser.parse_args()
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(args.repeat)
    atoms.rattle(0.05, seed=0)
    calc = hetens.default_ensemble(device="cpu", memory_check=False)
    with deterministic_torch("cpu") if args.deterministic else contextlib.nullcontext():
        runs = {}
        for name, checkpoint in (("plain", False), ("checkpointed", True), ("plain again", False)):
            runs[name] = evaluate(calc, atoms, checkpoint)
            print(f"{name}: {runs[name][3]:.1f} s", flush=True)
    (e0, f0, u0, _), (e1, f1, u1, _), (e2, f2, u2, _) = runs.values()
    print(json.dumps({
        "atoms": len(atoms), "deterministic": args.deterministic,
        "dE_checkpointed": float(e1 - e0), "max_dF_checkpointed": float(np.abs(f1 - f0).max()),
        "bit_identical": bool(e1 == e0 and np.array_equal(f1, f0)),
        "dE_plain_again": float(e2 - e0), "max_dF_plain_again": float(np.abs(f2 - f0).max()),
        "max_F": float(np.abs(f0).max()), "U": [u0, u1, u2],
    }))


if __name__ == "__main__":
    main()
