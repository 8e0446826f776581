"""Batched member evaluation against the per-frame ASE loop, on the same frames, in one run.

For each member, evaluates the same frames (energy, forces, stress) with
:func:`hetens.rescore.batched.evaluate_batch` in batches and frame by frame
through the member's ASE calculator, after a warm-up, alternating the two
``--repeats`` times and keeping the best time of each, and prints frames/s
and the ratio. Two sets of frames: small cells of 2-16 atoms (bcc W, rattled)
and ~100-atom cells (bcc W 5x5x2 = 100 atoms). Also checks the two paths
agree to float32 precision.

    .venv/bin/python benchmarks/bench_batched.py [--members SPEC ...] [--small 64] [--large 16]
        [--batch-size 16] [--repeats 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from ase.build import bulk

import hetens
from hetens.rescore.batched import evaluate_batch, has_batched_path


def small_cells(n: int):
    shapes = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]  # 2, 4, 8, 16 atoms
    frames = []
    for k in range(n):
        atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(shapes[k % 4])
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    return frames


def large_cells(n: int):
    frames = []
    for k in range(n):
        atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat((5, 5, 2))  # 100 atoms
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    return frames


def run_batched(member, frames, batch_size):
    out = []
    for start in range(0, len(frames), batch_size):
        out += evaluate_batch(member, frames[start:start + batch_size], True)
    return out


def run_per_frame(member, frames):
    return evaluate_batch(member, frames, True, batched=False)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench(member, frames, batch_size, repeats):
    for atoms in frames[:2]:  # warm-up both paths (first-call compilation, allocator)
        run_batched(member, [atoms, atoms], 2)
        run_per_frame(member, [atoms])
    best_b = best_s = float("inf")
    for _ in range(repeats):
        t_b, batched = timed(lambda: run_batched(member, frames, batch_size))
        t_s, single = timed(lambda: run_per_frame(member, frames))
        best_b, best_s = min(best_b, t_b), min(best_s, t_s)
    max_df = max(float(np.abs(b[1] - s[1]).max()) for b, s in zip(batched, single))
    max_de = max(abs(b[0] - s[0]) for b, s in zip(batched, single))
    return len(frames) / best_b, len(frames) / best_s, max_de, max_df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="+", default=["sevenn:7net-0", "sevenn:7net-mf-0@PBE", "chgnet:0.3.0"])
    parser.add_argument("--small", type=int, default=64, help="number of 2-16-atom frames")
    parser.add_argument("--large", type=int, default=16, help="number of 100-atom frames")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch

    print(f"device {args.device}; torch threads {torch.get_num_threads()}; CPUs {os.cpu_count()}; "
          f"batch size {args.batch_size}; best of {args.repeats}")
    print(f"{'member':24s} {'cells':>14s} {'batched f/s':>12s} {'per-frame f/s':>14s} {'ratio':>6s} "
          f"{'max|dE| eV':>10s} {'max|dF| eV/A':>12s}")
    sets = [("2-16 atoms", small_cells(args.small)), ("100 atoms", large_cells(args.large))]
    for spec in args.members:
        member = hetens.load_member(spec, device=args.device)
        if not has_batched_path(member):
            print(f"{spec:24s} has no batched path; skipped")
            continue
        for label, frames in sets:
            fps_b, fps_s, de, df = bench(member, frames, args.batch_size, args.repeats)
            print(f"{spec:24s} {label:>14s} {fps_b:12.2f} {fps_s:14.2f} {fps_b / fps_s:6.2f} {de:10.1e} {df:12.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
