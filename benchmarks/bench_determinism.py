"""DIEP with and without torch's deterministic algorithms: cost and reproducibility, side by side.

hetens runs DIEP's calls under ``torch.use_deterministic_algorithms(True, warn_only=True)``
(``hetens/families/diep.py``), because its ``scatter_add_`` sums vary from call to call
on a CPU. This script calls the same loaded model on the same rattled bcc W cube,
alternating DIEP's own ``calculate`` (unwrapped) and hetens' deterministic one, and
prints the median seconds per call of each (first call left out) and how many distinct
force arrays each gave.

    .venv/bin/python benchmarks/bench_determinism.py --repeat 3 --calls 6
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="cubic repeats of the 2-atom bcc cell (3: 54 atoms)")
    parser.add_argument("--calls", type=int, default=6, help="calls of each kind")
    args = parser.parse_args()

    from ase.build import bulk

    import hetens

    member = hetens.load_member("diep:diep_fold1", device="cpu")
    deterministic = member.calculator.calculate
    plain = deterministic.__wrapped__
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(args.repeat)
    atoms.rattle(0.05, seed=1)
    seconds = {"default": [], "deterministic": []}
    forces = {"default": set(), "deterministic": set()}
    for _ in range(args.calls):
        for kind, calculate in (("default", plain), ("deterministic", deterministic)):
            start = time.perf_counter()
            calculate(atoms, ["energy", "forces"], ["positions"])
            seconds[kind].append(time.perf_counter() - start)
            forces[kind].add(np.asarray(member.calculator.results["forces"]).tobytes())
    load = os.getloadavg()
    print(f"{len(atoms)} atoms, {args.calls} calls each, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for kind in seconds:
        print(f"  {kind:13s} median {np.median(seconds[kind][1:]):.3f} s/call, "
              f"{len(forces[kind])} distinct force arrays of {args.calls}")
    ratio = np.median(seconds["deterministic"][1:]) / np.median(seconds["default"][1:])
    print(f"  deterministic / default: {ratio:.2f}")


if __name__ == "__main__":
    main()
