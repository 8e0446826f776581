"""The paper's distillation, measured with hetens: test error of MACE trained on mixed sets vs the DFT fraction.

Liu et al. (2026) train ACE on tungsten sets in which frames with U < U_c
keep uMLIP labels and the rest keep DFT labels, and test on held-out DFT.
This script does the same with hetens' commands end to end:

1. split the tungsten DFT data (``--data``) by ``--seed`` into a training
   pool (``--pool-size`` frames) and a test set (``--test-size`` frames);
2. ``hetens score`` the pool with the default offline ensemble (cached in
   ``--work``), or take the pool's frames from ``--scored``, a file of the
   whole data scored earlier (``hetens score w_dev.extxyz -o scored.extxyz``:
   the same frames in the same order, checked);
3. ``hetens select`` at each U_c (``--thresholds``; ``inf`` = uMLIP only,
   default: 0, the pool's 50 % and 90 % U quantiles, inf);
4. the "DFT" for the queued frames is the data's own DFT labels, brought
   back with ``hetens merge`` (per-element shift fit on the ``--anchors``
   calm frames select queued for it; ``--no-align`` where no frame has
   both labels);
5. train MACE with ``mace_run_train`` on each merged ``train.extxyz`` with
   identical settings and seeds (``--epochs``, ``--channels``...), and test
   each model's energy and force RMSE against the test set's DFT.

Writes ``WORK/results.json`` and ``WORK/distillation.png``.

    .venv/bin/python benchmarks/bench_distillation.py --work distill --scored w_dev_scored.extxyz \\
        --thresholds 0 0.5 1 10 inf [--max-atoms 54] [--test-size 100] [--pool-size 0] [--epochs 30]
        [--anchors 3] [--seed 0] [--parallel 2] [--stage all|score]

The defaults are the run in docs/distillation.md (frames of at most 54 atoms, a
100-frame test set, every other frame in the pool, 30 epochs of a 16-channel
MACE: about half an hour of training on 2 cores); the full-size run is
``--max-atoms 1000 --pool-size 0 --test-size 186 --epochs 200 --channels 64 --max-L 1 --replicas 5``
(``--pool-size 0``: every frame not in the test set).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "w_dft_dev.extxyz.xz"
PAPER = [  # U_c, DFT fraction (atoms), force RMSE eV/A, energy RMSE meV/atom (Test_W_ACE, 11 uMLIPs)
    ("0", 1.000, 0.166, 6.7), ("0.1", 0.951, 0.165, 6.0), ("0.5", 0.394, 0.165, 5.7),
    ("1", 0.043, 0.165, 5.7), ("10", 0.028, 0.173, 6.6), ("inf", 0.0, 1.33, 114.0),
]
INF = 1e9  # select takes finite thresholds; no U reaches this


def hetens(*args: str) -> None:
    cmd = [sys.executable, "-m", "hetens.cli.main", *args]
    print("$ hetens " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def split(args, work: Path):
    from ase.io import read, write

    pool_path, test_path = work / "pool.extxyz", work / "test.extxyz"
    if pool_path.exists() and test_path.exists():
        return pool_path, test_path
    every = read(str(args.data), ":")
    kept = [i for i, a in enumerate(every) if len(a) <= args.max_atoms]
    order = np.random.default_rng(args.seed).permutation(len(kept))
    test = order[: args.test_size]
    pool = order[args.test_size :] if args.pool_size == 0 else order[args.test_size : args.test_size + args.pool_size]
    write(str(test_path), [every[kept[i]] for i in test])
    write(str(pool_path), [every[kept[i]] for i in pool])
    (work / "pool_data_index.json").write_text(json.dumps([int(kept[i]) for i in pool]) + "\n")
    return pool_path, test_path


def score(work: Path, pool: Path, whole_scored: Path | None = None) -> Path:
    scored = work / "pool_scored.extxyz"
    if scored.exists():
        return scored
    if whole_scored is None:
        start = time.perf_counter()
        hetens("score", str(pool), "-o", str(scored), "--progress", "log")
        (work / "score_wall_s.txt").write_text(f"{time.perf_counter() - start:.0f}\n")
        return scored
    from ase.io import read, write

    index = json.loads((work / "pool_data_index.json").read_text())
    every = read(str(whole_scored), ":")
    frames = []
    for j, (i, atoms) in enumerate(zip(index, read(str(pool), ":"))):
        done = every[i]
        if len(done) != len(atoms) or not np.allclose(done.positions, atoms.positions, atol=1e-6):
            raise SystemExit(f"{whole_scored} frame {i} is not the data's frame {i}: score the same file")
        done.info["hetens_source"] = f"{pool}:{j}"
        frames.append(done)
    write(str(scored) + ".tmp.extxyz", frames)
    os.replace(str(scored) + ".tmp.extxyz", scored)
    (work / "score_wall_s.txt").write_text(f"taken from {whole_scored}\n")
    return scored


def thresholds(args, scored: Path) -> list[float]:
    from ase.io import read

    if args.thresholds:
        return [INF if t in ("inf", "∞") else float(t) for t in args.thresholds]
    u = np.array([a.info["hetens_U"] for a in read(str(scored), ":")])
    return [0.0, float(f"{np.quantile(u, 0.5):.3g}"), float(f"{np.quantile(u, 0.9):.3g}"), INF]


def build_sets(work: Path, pool: Path, scored: Path, ucs: list[float], anchors: int) -> dict[float, Path]:
    """Select, then bring the pool's own DFT labels back for the queued frames with ``hetens merge``."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    dft = read(str(pool), ":")
    sel = work / "sel"
    if not sel.exists():
        hetens("select", str(scored), "--threshold", *[f"{u:g}" for u in ucs], "--out-dir", str(sel),
               "--anchors", str(anchors))
    sets = {}
    for uc in ucs:
        folder = sel / f"Uc_{uc:g}"
        out = work / f"train_Uc_{uc:g}"
        if not (out / "train.extxyz").exists():
            needs = folder / "needs_dft.extxyz"
            queued = read(str(needs), ":") if needs.exists() and needs.stat().st_size else []
            results = []
            for atoms in queued:  # the "DFT run": the data's own labels for this frame
                index = int(str(atoms.info["hetens_source"]).rsplit(":", 1)[1])
                ref = dft[index]
                done = atoms.copy()
                done.calc = SinglePointCalculator(done, energy=ref.get_potential_energy(), forces=ref.get_forces())
                results.append(done)
            dft_files = []
            if results:
                write(str(work / f"dft_Uc_{uc:g}.extxyz"), results)
                dft_files = [str(work / f"dft_Uc_{uc:g}.extxyz")]
            extra = ["--no-align"] if not queued else []
            hetens("merge", str(folder), *dft_files, "-o", str(out), "--format", "extxyz", *extra)
        sets[uc] = out
    return sets


def train_command(args, name: str, train_file: Path, model_dir: Path, seed: int) -> list[str]:
    """``mace_run_train`` with the study's settings (identical for every U_c but the data)."""
    return [
        str(Path(sys.executable).with_name("mace_run_train")), f"--name={name}", f"--train_file={train_file}",
        "--valid_fraction=0.1", "--energy_key=REF_energy", "--forces_key=REF_forces", "--stress_key=REF_stress",
        "--E0s=average", "--model=MACE", f"--num_channels={args.channels}", f"--max_L={args.max_L}",
        "--num_interactions=2", "--correlation=2", f"--r_max={args.r_max}", "--batch_size=4",
        "--valid_batch_size=8", f"--max_num_epochs={args.epochs}", "--lr=0.01", "--energy_weight=1",
        "--forces_weight=10", "--scheduler_patience=5", f"--seed={seed}", "--device=cpu",
        "--default_dtype=float32", "--compute_stress=False", "--eval_interval=5", "--num_workers=0",
        f"--work_dir={model_dir}", f"--model_dir={model_dir}", f"--checkpoints_dir={model_dir / 'ckpt'}",
        f"--results_dir={model_dir / 'results'}", f"--log_dir={model_dir / 'logs'}",
    ]


def train_all(args, jobs: list[tuple[str, Path, int]], work: Path) -> dict[tuple[str, int], tuple[Path, float]]:
    """Train every ``(name, train_file, seed)`` at once (``--parallel`` processes, one thread each)."""
    out, running, queue = {}, [], list(jobs)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while queue or running:
        while queue and len(running) < args.parallel:
            name, train_file, seed = queue.pop(0)
            model_dir = work / "models" / f"{name}_seed{seed}"
            model = model_dir / f"{name}.model"
            if model.exists():
                out[(name, seed)] = (model, float((model_dir / "wall_s.txt").read_text()))
                continue
            model_dir.mkdir(parents=True, exist_ok=True)
            cmd = train_command(args, name, train_file, model_dir, seed)
            print("$ " + " ".join(cmd), flush=True)
            (model_dir / "command.txt").write_text(" ".join(cmd) + "\n")
            log = open(model_dir / "train.out", "w")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=model_dir, env=env)
            running.append((proc, log, name, seed, model, model_dir, time.perf_counter()))
        time.sleep(2)
        for item in list(running):
            proc, log, name, seed, model, model_dir, start = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            if proc.returncode != 0:
                raise SystemExit(f"mace_run_train failed for {name} seed {seed}: see {model_dir / 'train.out'}")
            wall = time.perf_counter() - start
            (model_dir / "wall_s.txt").write_text(f"{wall:.1f}\n")
            out[(name, seed)] = (model, wall)
    return out


def test_errors(model: Path, test: Path, calm_force: float) -> dict[str, float]:
    """The model's force RMSE (eV/A, over all components) and energy RMSE (meV/atom) on the test set,
    on all of it and on its calm frames (DFT max |F| <= ``calm_force`` eV/A: crystals, defects,
    liquids, without the compressed dimers and broken cells whose errors dominate the whole)."""
    import torch
    from ase.io import read

    import hetens

    # hetens' MACE adapter loads a trained model file (torch >= 2.6 refuses MACECalculator's plain load)
    calc = hetens.load_member(f"mace:{model}@level=DFT", device="cpu").calculator
    df, de, calm = [], [], []
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for atoms in read(str(test), ":"):
        e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
        calm.append(float(np.linalg.norm(f_ref, axis=1).max()) <= calm_force)
        atoms.calc = calc
        df.append((atoms.get_forces() - f_ref).ravel())
        de.append((atoms.get_potential_energy() - e_ref) / len(atoms))
    calm, de = np.array(calm), np.array(de)

    def rmse(mask):
        forces = np.concatenate([d for d, keep in zip(df, mask) if keep]) if mask.any() else np.array([np.nan])
        return float(np.sqrt(np.mean(forces**2))), 1000 * float(np.sqrt(np.mean(de[mask] ** 2)))

    (f_all, e_all), (f_calm, e_calm) = rmse(np.ones_like(calm)), rmse(calm)
    return {"force_rmse": f_all, "energy_rmse": e_all, "force_rmse_calm": f_calm, "energy_rmse_calm": e_calm,
            "n_test_calm": int(calm.sum()), "n_test": int(calm.size)}


def figure(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, paper_col, label in (
        (axes[0], "force_rmse", 2, "test force RMSE [eV/Å]"), (axes[1], "energy_rmse", 3, "test energy RMSE [meV/atom]")
    ):
        x = [r["dft_fraction_atoms"] for r in rows]
        for suffix, style, what in (("", "o-", "all test frames"), ("_calm", "^:", "calm test frames")):
            y = [r[key + suffix] for r in rows]
            err = [r.get(key + suffix + "_std", 0.0) for r in rows]
            ax.errorbar(x, y, yerr=err, fmt=style, label=f"hetens default ensemble + tiny MACE: {what}")
        ax.plot([p[1] for p in PAPER], [p[paper_col] for p in PAPER], "s--", color="grey",
                label="paper: 11 uMLIPs + ACE (Test_W_ACE)")
        ax.set_xlabel("DFT fraction (atoms)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("distill_bench"))
    parser.add_argument("--seed", type=int, default=0, help="split seed (also the first training seed)")
    parser.add_argument("--pool-size", type=int, default=0, help="training pool frames (0: all but the test set)")
    parser.add_argument("--test-size", type=int, default=100)
    parser.add_argument("--max-atoms", type=int, default=54, help="use frames of at most this many atoms (both sets)")
    parser.add_argument("--thresholds", nargs="+", help="U_c values in eV/A ('inf' for uMLIP only)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--max-L", dest="max_L", type=int, default=0)
    parser.add_argument("--r-max", dest="r_max", type=float, default=4.5)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2, help="trainings at once (one thread each)")
    parser.add_argument("--stage", choices=["all", "score"], default="all")
    parser.add_argument("--calm-force", type=float, default=20.0,
                        help="test frames with DFT max |F| up to this (eV/A) are also scored apart as 'calm'")
    parser.add_argument("--anchors", type=int, default=3,
                        help="hetens select --anchors: calm frames per U_c queued to fit the energy reference")
    parser.add_argument("--scored", type=Path, help="the whole --data scored earlier by hetens score "
                        "(same frames, same order): the pool's scores are taken from it")
    args = parser.parse_args()
    if args.data.suffix == ".xz":
        import lzma

        plain = args.work / "w_dev.extxyz"
        args.work.mkdir(parents=True, exist_ok=True)
        if not plain.exists():
            plain.write_bytes(lzma.open(args.data).read())
        args.data = plain
    work = args.work
    pool, test = split(args, work)
    scored = score(work, pool, args.scored)
    if args.stage == "score":
        return
    ucs = thresholds(args, scored)
    sets = build_sets(work, pool, scored, ucs, args.anchors)
    start = time.perf_counter()
    jobs = [(f"Uc_{uc:g}", folder / "train.extxyz", args.seed + r) for uc, folder in sets.items()
            for r in range(args.replicas)]
    models = train_all(args, jobs, work)
    train_wall = time.perf_counter() - start
    rows = []
    for uc, folder in sets.items():
        report = json.loads((folder / "provenance.json").read_text())
        errors, walls = [], []
        for r in range(args.replicas):
            model, wall = models[(f"Uc_{uc:g}", args.seed + r)]
            errors.append(test_errors(model, test, args.calm_force))
            walls.append(wall)
        mean = {k: float(np.mean([e[k] for e in errors])) for k in errors[0]}
        std = {k + "_std": float(np.std([e[k] for e in errors])) for k in errors[0] if "rmse" in k}
        row = {
            "U_c": "inf" if uc >= INF else uc,
            "dft_fraction_atoms": report["dft_fraction_atoms"],
            "n_frames": report["n_frames"],
            "shifts_eV_per_atom": report["shifts_eV_per_atom"],
            "fit_residual_rmse_eV_per_atom": report["fit_residual_rmse_eV_per_atom"],
            "fit_on": report.get("fit_on"), "n_dft_frames": report["n_frames"]["dft"],
            **mean, **std,
            "train_wall_s": walls,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "paper": PAPER,
           "score_wall_s": (work / "score_wall_s.txt").read_text().strip() if (work / "score_wall_s.txt").exists() else None,
           "train_wall_s_all": train_wall, "load_average": os.getloadavg(),
           "train_command_example": " ".join(train_command(args, "NAME", Path("TRAIN"), Path("DIR"), args.seed))}
    (work / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    figure(rows, work / "distillation.png")
    print(f"{'U_c':>8} {'DFT frac':>9} {'F RMSE':>8} {'E RMSE':>8} {'F calm':>8} {'E calm':>8} {'W shift':>9}")
    for r in rows:
        uc = r["U_c"] if isinstance(r["U_c"], str) else f"{r['U_c']:g}"
        shift = (r["shifts_eV_per_atom"] or {}).get("W")
        print(f"{uc:>8} {r['dft_fraction_atoms']:>9.3f} {r['force_rmse']:>8.3f} {r['energy_rmse']:>8.1f} "
              f"{r['force_rmse_calm']:>8.3f} {r['energy_rmse_calm']:>8.1f} "
              + ("-" if shift is None else f"{shift:+9.4f}"))


if __name__ == "__main__":
    if not math.isfinite(INF) or INF < 1e6:
        raise SystemExit("INF must be a large finite number")
    main()
