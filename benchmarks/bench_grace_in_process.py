"""GRACE (TensorFlow) in the main process or in a worker: what each costs, measured in one run.

Runs in THIS interpreter (the main environment, torch + sevenn) with the grace
environment's site-packages appended to ``sys.path`` (after this environment's
own, so numpy, scipy, ase... stay the main environment's), which is what an
in-process GRACE member would look like. Prints, side by side:

- importing tensorpotential (TensorFlow) here: seconds and resident memory added;
- the environment variables the import and a load leave set;
- SevenNet 7net-0 on a 16-atom W cell before and after TensorFlow is loaded and
  has run a GRACE model (largest force difference: interference), and its time
  per call before and after (TensorFlow's thread pools compete with torch's);
- the same GRACE model through a worker of the grace environment: start time
  and time per call, against in-process.

    .venv/bin/python benchmarks/bench_grace_in_process.py --grace-python ENV/bin/python \
        --model /path/to/saved_model_folder [--calls 5]

Build the model with tests/own_env_models.py (``build_grace_model``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def timed_calls(calc, atoms, calls: int):
    """Best seconds per energy+forces call over ``calls`` distinct geometries (no cached
    results), and the forces of the unmoved ``atoms`` (computed last)."""
    best = float("inf")
    for i in range(calls):
        probe = atoms.copy()
        probe.positions[0, 0] += 1e-3 * (i + 1)
        probe.calc = calc
        started = time.perf_counter()
        probe.get_forces()
        best = min(best, time.perf_counter() - started)
    probe = atoms.copy()
    probe.calc = calc
    return best, probe.get_forces()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grace-python", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()

    import hetens
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.symbols[[1, 4, 6]] = "Mo"
    atoms.rattle(0.04, seed=3)

    sevenn = hetens.load_member("sevenn:7net-0", device="cpu")
    import torch

    threads_before = torch.get_num_threads()
    t_sevenn_before, f_before = timed_calls(sevenn.calculator, atoms, args.calls)

    site = subprocess.run([args.grace_python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    sys.path.append(site)
    environment = dict(os.environ)
    rss0, started = rss_mb(), time.perf_counter()
    import tensorpotential  # noqa: F401  (TensorFlow comes with it)
    from tensorpotential.calculator import TPCalculator

    import_seconds, import_mb = time.perf_counter() - started, rss_mb() - rss0
    started = time.perf_counter()
    grace = TPCalculator(model=args.model)
    load_seconds = time.perf_counter() - started
    t_grace_in, _ = timed_calls(grace, atoms, args.calls)
    added = {k: os.environ[k] for k in set(os.environ) - set(environment)}
    changed = {k: (environment[k], os.environ.get(k)) for k in environment if os.environ.get(k) != environment[k]}
    t_sevenn_after, f_after = timed_calls(sevenn.calculator, atoms, args.calls)

    started = time.perf_counter()
    worker = hetens.load_member(f"grace:{args.model}@level=PBE+U@python={args.grace_python}", device="cpu")
    with worker.calculator:
        first = atoms.copy()
        first.positions[0, 0] -= 1e-3
        first.calc = worker.calculator
        first.get_forces()  # starts the worker: import, load, first call
        worker_start = time.perf_counter() - started
        t_grace_worker, _ = timed_calls(worker.calculator, atoms, args.calls)

    print(f"import tensorpotential + TensorFlow in-process: {import_seconds:.1f} s, +{import_mb:.0f} MB RSS")
    print(f"TPCalculator load in-process: {load_seconds:.1f} s; worker start + load + first call: {worker_start:.1f} s")
    print(f"environment variables added: {added}; changed: {changed}")
    print(f"torch threads before/after: {threads_before}/{torch.get_num_threads()}")
    print(f"7net-0 forces max |diff| after TensorFlow ran: {np.abs(f_after - f_before).max():.3g} eV/A")
    print(f"7net-0 per call before/after TensorFlow: {t_sevenn_before * 1e3:.1f}/{t_sevenn_after * 1e3:.1f} ms "
          f"(ratio {t_sevenn_after / t_sevenn_before:.2f})")
    print(f"GRACE per call in-process/worker: {t_grace_in * 1e3:.1f}/{t_grace_worker * 1e3:.1f} ms "
          f"(ratio {t_grace_worker / t_grace_in:.2f})")


if __name__ == "__main__":
    main()
