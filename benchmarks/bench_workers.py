"""Worker processes: per-call overhead of an isolated member, and parallel ensemble speed-up.

1. Per-call overhead: one member (default ``chgnet:0.3.0``) evaluated
   in-process (the way a worker evaluates it: the family's group path for
   one member where it has one, as CHGNet does) and as an isolated member (a worker under this interpreter,
   same device, same torch thread count: ``--threads``, default 1), on
   rattled 54- and 250-atom bcc W cells, energy + forces + stress. Calls are
   interleaved (ABBA) after warm-up; medians. ``overhead`` = median(isolated)
   - median(in-process), printed against the budget 5 ms + 5 % of the
   in-process time. ``transport`` is the
   median of (round trip - the worker's own compute time) of the same calls:
   what the pipe, encoding and structure rebuild cost, free of the noise of
   a shared machine.
2. Parallel vs sequential: a 4-member ensemble (by default two SevenNet and
   two CHGNet models, all PBE+U, on a rattled 16-atom W cell; ``--ensemble``
   and ``--ensemble-repeat`` change them) evaluated with ``parallel=True`` (four workers,
   ``cores // 4`` torch threads each, at least 1) and in-process one member
   after another, the latter twice: with torch's default thread count (all
   cores) and with 1 thread. Interleaved, medians; the ratio that counts is
   parallel / the faster sequential (target <= 0.65 on 2 cores). Also prints the
   workers' own compute times, their longest-first schedule on the cores, and
   the bound the cores set (sequential 1-thread time / cores).

Run it on an otherwise idle machine: Linux shares the CPU between sessions
(``sched_autogroup``), so while other sessions keep the cores busy, this
session's workers together get no more CPU than one process would, and the
parallel ratio approaches 1. The load average is printed at start and end.

    .venv/bin/python benchmarks/bench_workers.py [--repeats 7] [--member chgnet:0.3.0] [--threads 1]
        [--sizes 3 5] [--ensemble SPEC ...] [--ensemble-repeat 2] [--sequential-threads 1 2]
        [--skip-overhead] [--skip-parallel]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
from ase.build import bulk

import hetens
from hetens.core.evaluation import evaluate_member
from hetens.core.group_evaluation import evaluate_alone

#: Four PBE+U members whose cost on small cells is mostly single-threaded work
#: (graph construction, Python): what worker processes can overlap on few cores.
ENSEMBLE = ("sevenn:7net-0_22may2024", "sevenn:7net-mf-0@PBE", "chgnet:0.3.0", "chgnet:0.2.0")


def cell(repeat: int):
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=42)
    return atoms


def fresh(atoms, rng):
    moved = atoms.copy()
    moved.positions += rng.normal(scale=1e-3, size=moved.positions.shape)
    return moved


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def overhead(member_spec: str, sizes: list[int], repeats: int, threads: int, rng) -> None:
    import torch

    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    local = hetens.load_member(member_spec, device="cpu")
    with hetens.load_member(member_spec, device="cpu", python=sys.executable,
                            threads=threads).calculator as isolated:
        info = isolated.wait_ready()
        print(f"\n1. per-call overhead of {member_spec}: in-process ({torch.get_num_threads()} torch threads) "
              f"vs worker pid {info['pid']} ({info['threads']} torch threads), cpu, energy+forces+stress")
        remote = hetens.Member(isolated, name=member_spec)
        print(f"{'atoms':>6} {'in-process[ms]':>15} {'isolated[ms]':>13} {'overhead[ms]':>13} "
              f"{'transport[ms]':>14} {'budget[ms]':>11}  verdict")
        for repeat in sizes:
            atoms = cell(repeat)
            for _ in range(2):  # warm-up
                evaluate_member(local, fresh(atoms, rng), True)
                evaluate_member(remote, fresh(atoms, rng), True)
            t_local, t_remote, transport = [], [], []
            for index in range(repeats):
                structure = fresh(atoms, rng)
                runs = [(t_local, local), (t_remote, remote)]
                for times, member in runs if index % 2 else runs[::-1]:  # ABBA order
                    times.append(timed(lambda s=structure, m=member: evaluate_alone(m, s, True, True)))
                round_trip, compute = isolated.worker.last_timing
                transport.append(round_trip - compute)
            base, iso = statistics.median(t_local), statistics.median(t_remote)
            extra, budget = iso - base, 0.005 + 0.05 * base
            print(f"{len(atoms):>6} {base * 1e3:>15.1f} {iso * 1e3:>13.1f} {extra * 1e3:>13.1f} "
                  f"{statistics.median(transport) * 1e3:>14.2f} {budget * 1e3:>11.1f}  "
                  f"{'within budget' if extra <= budget else 'OVER budget'}")
    torch.set_num_threads(default_threads)


def parallel(specs: list[str], repeat: int, repeats: int, sequential_threads: list[int] | None,
             rng) -> None:
    import torch

    atoms = cell(repeat)
    sequential = hetens.HeterogeneousEnsembleCalculator(specs, device="cpu")
    with hetens.HeterogeneousEnsembleCalculator(specs, device="cpu", parallel=True,
                                                lazy=False) as concurrent:
        threads = [m.calculator.worker.info["threads"] for m in concurrent.members]
        cores = len(os.sched_getaffinity(0))
        default_threads = torch.get_num_threads()
        print(f"\n2. {len(specs)}-member ensemble ({', '.join(specs)}), {len(atoms)} atoms, "
              f"{cores} cores: parallel=True (worker threads {threads}) vs sequential in-process "
              "one member after another")

        def run(calc, structure):
            structure.calc = calc
            structure.get_forces()
            structure.get_stress()

        def sequential_run(structure, n):
            torch.set_num_threads(n)
            try:
                run(sequential, structure)
            finally:
                torch.set_num_threads(default_threads)

        counts = sorted(set(sequential_threads or (1, default_threads)))
        for _ in range(2):  # warm-up
            for n in counts:
                sequential_run(fresh(atoms, rng), n)
            run(concurrent, fresh(atoms, rng))
        t_seq: dict[int, list[float]] = {n: [] for n in counts}
        t_par = []
        computes = []  # per parallel run: each worker's own compute time (s)
        for _ in range(repeats):  # a new structure for every run: no cached results
            for n in counts:
                t_seq[n].append(timed(lambda s=fresh(atoms, rng): sequential_run(s, n)))
            t_par.append(timed(lambda s=fresh(atoms, rng): run(concurrent, s)))
            computes.append([m.calculator.last_compute_seconds for m in concurrent.members])
        check = fresh(atoms, rng)
        sequential_run(check.copy(), 1)
        run(concurrent, check.copy())
        assert np.allclose(sequential.results["forces"], concurrent.results["forces"], atol=1e-5)
        seq = {n: statistics.median(t) for n, t in t_seq.items()}
        par = statistics.median(t_par)
        best = min(seq, key=seq.get)
        for n in counts:
            print(f"   sequential, {n} torch thread(s): {seq[n]:8.3f} s")
        print(f"   parallel=True:                  {par:8.3f} s")
        print(f"   ratio parallel / sequential ({best} thread(s), the faster): {par / seq[best]:.3f}  "
              "(target <= 0.65)")
        # Where the parallel time goes: the workers' own compute, scheduled longest first on
        # the cores (the pool's rule), against the measured wall time.
        own = [statistics.median(c[i] for c in computes) for i in range(len(specs))]
        span = lpt_makespan(own, cores)
        print("   workers' own compute (median s, 1 thread each): "
              + ", ".join(f"{name} {t:.3f}" for name, t in zip(concurrent.member_names, own)))
        print(f"   their longest-first schedule on {cores} cores: {span:.3f} s; parallel wall time "
              f"{par:.3f} s, so {par - span:.3f} s is dispatch, transport and contention")
        if 1 in seq:
            print(f"   bound from the cores alone: sequential 1-thread / {cores} = {seq[1] / cores:.3f} s, "
                  f"ratio {seq[1] / cores / seq[best]:.3f} of the faster sequential "
                  f"(2 threads make one member {seq[1] / seq.get(default_threads, seq[1]):.2f}x faster, not {cores}x)")


def lpt_makespan(seconds: list[float], cores: int) -> float:
    """Wall time of running jobs of these lengths longest first, one per core at a time."""
    loads = [0.0] * max(1, cores)
    for t in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--member", default="chgnet:0.3.0")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of both sides in the overhead timing")
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 5],
                        help="cubic bcc repeats: 3 -> 54 atoms, 5 -> 250 atoms")
    parser.add_argument("--ensemble", nargs="+", default=list(ENSEMBLE), metavar="SPEC",
                        help="members of the parallel timing")
    parser.add_argument("--ensemble-repeat", type=int, default=2,
                        help="cell of the parallel timing: 2 -> 16 atoms, 3 -> 54 atoms")
    parser.add_argument("--sequential-threads", type=int, nargs="+",
                        help="torch thread counts of the sequential runs (default: 1 and torch's default)")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-parallel", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores at start")
    if load > 1.0:
        print("warning: other processes are using the CPU; timings, the parallel ratio above all, "
              "will be pessimistic")
    if not args.skip_overhead:
        overhead(args.member, args.sizes, args.repeats, args.threads, rng)
    if not args.skip_parallel:
        parallel(args.ensemble, args.ensemble_repeat, args.repeats, args.sequential_threads, rng)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
