"""Scoring precomputed predictions: U for F frames x M members x N atoms, and reading the files.

1. Vectorised U and the ensemble results (:func:`hetens.rescore.scoring.score_predictions`)
   for ``--frames`` x ``--members`` x ``--atoms`` (default 1000 x 20 x 100),
   best of ``--repeats``, next to the per-frame loop over
   :func:`hetens.core.combine.combine_predictions` on the same arrays.
2. Reading one prediction file (``--frames`` frames of ``--atoms`` atoms, extxyz):
   hetens' reader against ``ase.io.read``, side by side; then
   :func:`hetens.rescore.precomputed.load_predictions` on ``--files`` copies.

    .venv/bin/python benchmarks/bench_precomputed.py [--frames 1000] [--members 20] [--atoms 100]
        [--files 4] [--jobs 1]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from hetens.core.combine import combine_predictions
from hetens.rescore.arrays import FrameArrays, PredictionSet
from hetens.rescore.precomputed import load_predictions, read_frame_arrays
from hetens.rescore.scoring import score_predictions


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def synthetic_set(frames: int, members: int, atoms: int) -> PredictionSet:
    rng = np.random.default_rng(0)
    total = frames * atoms
    geometry = FrameArrays(
        "",
        np.full(frames, atoms),
        np.full(total, 74),
        rng.normal(size=(total, 3)),
        np.tile(np.eye(3) * 15.0, (frames, 1, 1)),
        np.ones((frames, 3), dtype=bool),
    )
    return PredictionSet(
        [f"m{k}" for k in range(members)],
        geometry,
        rng.normal(size=(frames, members)),
        rng.normal(size=(total, members, 3)),
    )


def per_frame_loop(predictions: PredictionSet) -> None:
    offsets = predictions.frames.offsets
    for f in range(predictions.n_frames):
        rows = slice(offsets[f], offsets[f + 1])
        combine_predictions(
            predictions.member_energies[f], predictions.member_forces[rows].transpose(1, 0, 2)
        )


def write_file(path: Path, frames: int, atoms: int) -> None:
    rng = np.random.default_rng(1)
    base = bulk("W", "bcc", a=3.17, cubic=True).repeat((5, 5, 2))[:atoms]
    out = []
    for k in range(frames):
        a = base.copy()
        a.rattle(0.05, seed=k)
        a.calc = SinglePointCalculator(a, energy=float(rng.normal()), forces=rng.normal(size=(len(a), 3)))
        out.append(a)
    write(path, out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--atoms", type=int, default=100)
    parser.add_argument("--files", type=int, default=4, help="prediction files for load_predictions")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    predictions = synthetic_set(args.frames, args.members, args.atoms)
    shape = f"{args.frames} frames x {args.members} members x {args.atoms} atoms"
    t_vec = best_of(args.repeats, lambda: score_predictions(predictions))
    t_loop = best_of(1, lambda: per_frame_loop(predictions))
    print(f"U and ensemble results, {shape}:")
    print(f"  vectorised        {t_vec:8.3f} s")
    print(f"  per-frame loop    {t_loop:8.3f} s   (ratio {t_loop / t_vec:.1f}x)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pred0.extxyz"
        write_file(path, args.frames, args.atoms)
        size = path.stat().st_size / 1e6
        t_fast = best_of(args.repeats, lambda: read_frame_arrays(path))
        t_ase = best_of(1, lambda: read(path, ":"))
        print(f"reading one extxyz file ({args.frames} frames x {args.atoms} atoms, {size:.1f} MB):")
        print(f"  hetens reader     {t_fast:8.3f} s")
        print(f"  ase.io.read       {t_ase:8.3f} s   (ratio {t_ase / t_fast:.1f}x)")
        paths = [path]
        for k in range(1, args.files):
            paths.append(Path(tmp) / f"pred{k}.extxyz")
            shutil.copy(path, paths[-1])
        t_load = best_of(1, lambda: load_predictions(paths, jobs=args.jobs))
        print(
            f"load_predictions, {args.files} files, jobs={args.jobs}: {t_load:.3f} s "
            f"({t_load / args.files:.3f} s per file, alignment checks included)"
        )


if __name__ == "__main__":
    main()
