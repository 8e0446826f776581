"""Quality of candidate ensembles: rho = Spearman(U, eps), force RMSE and cost.

Evaluates every candidate member ONCE per labelled configuration (timing each
call), caches its energy and forces (one ``.npz`` per member and
configuration, so an interrupted run resumes where it stopped), then builds
every candidate ensemble from the cache with hetens' pure functions:

- U over all members (predictors and witnesses): plain-mean reference,
  uniform U weights (:func:`hetens.core.uncertainty.compute_uncertainty`);
- the returned forces ``F_ret``: uniform mean of the predictors only;
- ``eps = max_i ||F_DFT[i] - F_ret[i]||`` (eV/Å), the error U should rank;
- force RMSE of ``F_ret`` against DFT over all force components (eV/Å);
- rho with a seeded bootstrap 95% interval over configurations, and rho on
  the two halves of the subsample (A and B, by the seeded order) so a member
  choice made on one half can be confirmed on the other;
- s/config: sum of the members' mean per-call times on the subsample;
  s/step54: sum of the members' median energy+forces time on the 54-atom W
  cell ``examples/data/W_bcc_54.extxyz``, the cost of one MD step.

    # evaluate (resumable, run it in the background), then print the table
    nice -n 10 .venv/bin/python benchmarks/bench_quality.py --n 200 --cache bench_cache
    # only print the table from what the cache holds
    .venv/bin/python benchmarks/bench_quality.py --n 200 --cache bench_cache --table-only

The data default is ``../shared/data/w_dft_dev.extxyz.xz`` (relative to the
repository root): DFT (VASP PBE) tungsten configurations, energy in
``info["energy"]`` and forces in ``arrays["forces"]`` (or a single-point
calculator). Times are wall-clock seconds with ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

PBE_U = ("sevenn:7net-0", "sevenn:7net-l3i5", "sevenn:7net-mf-0@PBE", "chgnet:0.3.0", "chgnet:0.2.0")
R2SCAN = ("chgnet:r2scan", "sevenn:7net-mf-0@R2SCAN", "diep:diep_fold1")
CANDIDATES = PBE_U + R2SCAN

SHORT = {
    "sevenn:7net-0": "7n0",
    "sevenn:7net-l3i5": "l3i5",
    "sevenn:7net-mf-0@PBE": "mfP",
    "chgnet:0.3.0": "c30",
    "chgnet:0.2.0": "c20",
    "chgnet:r2scan": "cR",
    "sevenn:7net-mf-0@R2SCAN": "mfR",
    "diep:diep_fold1": "diep",
}


def slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", spec)


# --------------------------------------------------------------------------- data


def load_subsample(path: Path, n: int, seed: int):
    """The first ``n`` configurations of a seeded permutation of the file (a larger
    ``n`` extends a smaller one, so the cache of a smaller run is reused)."""
    import io
    import lzma

    import ase.io

    if path.suffix == ".xz":
        # ase's reader seeks back and forth, which on an .xz stream re-decompresses from
        # the start each time; decompress once into memory instead.
        with lzma.open(path, "rt") as handle:
            frames = ase.io.read(io.StringIO(handle.read()), ":", format="extxyz")
    else:
        frames = ase.io.read(str(path), ":")
    order = np.random.default_rng(seed).permutation(len(frames))[:n]
    chosen = []
    for idx in order:
        atoms = frames[int(idx)]
        key = int(atoms.info.get("config_index", idx))
        if "forces" in atoms.arrays:
            forces = np.asarray(atoms.arrays["forces"], dtype=float)
        else:
            forces = np.asarray(atoms.get_forces(), dtype=float)
        atoms.calc = None
        chosen.append((key, atoms, forces))
    return chosen


# --------------------------------------------------------------------------- evaluation


def cache_file(cache: Path, spec: str, key: int) -> Path:
    return cache / slug(spec) / f"{key:06d}.npz"


def save_npz(target: Path, **arrays) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, target)


def evaluate_once(calc, atoms) -> tuple[float, np.ndarray, float]:
    """Energy (eV), forces (eV/Å) and wall seconds of one fresh energy+forces call."""
    structure = atoms.copy()
    start = time.perf_counter()
    calc.calculate(structure, ["energy", "forces"], ["positions", "numbers", "cell", "pbc"])
    seconds = time.perf_counter() - start
    return float(calc.results["energy"]), np.array(calc.results["forces"], dtype=float), seconds


def evaluate(specs, configs, cache: Path, md_repeats: int) -> None:
    """Fill the cache: each member's 54-atom step time, then configuration by
    configuration every member (so an interrupted run leaves complete configs)."""
    import ase.io

    import hetens

    cell54 = ase.io.read(str(ROOT / "examples" / "data" / "W_bcc_54.extxyz"))
    cell54.calc = None
    calcs = {}
    for spec in specs:
        todo = [k for k, _, _ in configs if not cache_file(cache, spec, k).exists()]
        step_file = cache / slug(spec) / "step54.npz"
        if not todo and step_file.exists():
            continue
        start = time.perf_counter()
        calc = hetens.load_member(spec, device="cpu").calculator
        print(f"[{spec}] loaded in {time.perf_counter() - start:.1f} s; {len(todo)} configs to do",
              flush=True)
        evaluate_once(calc, cell54)  # warm-up
        if not step_file.exists():
            times = []
            for _ in range(md_repeats):
                moved = cell54.copy()
                moved.rattle(1e-3, seed=len(times))
                times.append(evaluate_once(calc, moved)[2])
            save_npz(step_file, seconds=np.array(times))
        calcs[spec] = calc
    for done, (key, atoms, _) in enumerate(configs, 1):
        for spec, calc in calcs.items():
            target = cache_file(cache, spec, key)
            if target.exists():
                continue
            try:
                energy, forces, seconds = evaluate_once(calc, atoms)
            except Exception as exc:  # noqa: BLE001 - record and go on; the table reports it
                print(f"[{spec}] config {key} failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            save_npz(target, energy=energy, forces=forces, seconds=seconds)
        if done % 10 == 0:
            print(f"{done}/{len(configs)} configurations", flush=True)


def measure_steps(specs, cache: Path, repeats: int) -> None:
    """Re-time the 54-atom step of every member in one process, interleaved: ``repeats``
    rounds, each member once per round (fairer than per-member blocks on a shared machine)."""
    import ase.io

    import hetens

    cell54 = ase.io.read(str(ROOT / "examples" / "data" / "W_bcc_54.extxyz"))
    cell54.calc = None
    calcs = {spec: hetens.load_member(spec, device="cpu").calculator for spec in specs}
    for calc in calcs.values():
        evaluate_once(calc, cell54)  # warm-up
    times = {spec: [] for spec in specs}
    for round_ in range(repeats):
        moved = cell54.copy()
        moved.rattle(1e-3, seed=round_)
        for spec, calc in calcs.items():
            times[spec].append(evaluate_once(calc, moved)[2])
    for spec in specs:
        save_npz(cache / slug(spec) / "step54.npz", seconds=np.array(times[spec]))
        print(f"[{spec}] 54-atom step: median {statistics.median(times[spec]):.3f} s "
              f"over {repeats}", flush=True)


# --------------------------------------------------------------------------- scoring


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def candidate_rows():
    """(name, predictors, witnesses) of every candidate ensemble."""
    rows = [
        ("today: 5 PBE+U", PBE_U, ()),
        ("5 PBE+U + 3 r2SCAN wit", PBE_U, R2SCAN),
    ]
    for drop in CANDIDATES:
        preds = tuple(s for s in PBE_U if s != drop)
        wits = tuple(s for s in R2SCAN if s != drop)
        rows.append((f"5+3 minus {SHORT[drop]}", preds, wits))
    no_l3 = tuple(s for s in PBE_U if s != "sevenn:7net-l3i5")
    rows += [
        ("4 PBE+U (no l3i5)", no_l3, ()),
        ("4 PBE+U + cR wit", no_l3, ("chgnet:r2scan",)),
        ("4 PBE+U + cR,diep wit", no_l3, ("chgnet:r2scan", "diep:diep_fold1")),
        ("4 PBE+U + mfR,diep wit", no_l3, ("sevenn:7net-mf-0@R2SCAN", "diep:diep_fold1")),
        ("4 PBE+U + cR,mfR wit", no_l3, ("chgnet:r2scan", "sevenn:7net-mf-0@R2SCAN")),
        ("5 PBE+U + cR,diep wit", PBE_U, ("chgnet:r2scan", "diep:diep_fold1")),
        ("5 PBE+U + cR,mfR wit", PBE_U, ("chgnet:r2scan", "sevenn:7net-mf-0@R2SCAN")),
        ("5 PBE+U + diep wit", PBE_U, ("diep:diep_fold1",)),
        ("3 PBE+U (7n0,mfP,c30)", ("sevenn:7net-0", "sevenn:7net-mf-0@PBE", "chgnet:0.3.0"), ()),
        ("2 PBE+U (7n0,c30) + 3 wit", ("sevenn:7net-0", "chgnet:0.3.0"), R2SCAN),
        ("5+3 minus l3i5, c20", ("sevenn:7net-0", "sevenn:7net-mf-0@PBE", "chgnet:0.3.0"), R2SCAN),
        ("5+3 minus c20, mfP", ("sevenn:7net-0", "sevenn:7net-l3i5", "chgnet:0.3.0"), R2SCAN),
        ("5+3 minus l3i5, mfP", ("sevenn:7net-0", "chgnet:0.3.0", "chgnet:0.2.0"), R2SCAN),
        ("NEW DEFAULT: mfP,c30 | diep", ("sevenn:7net-mf-0@PBE", "chgnet:0.3.0"), ("diep:diep_fold1",)),
        ("mfP,c30 | cR,diep", ("sevenn:7net-mf-0@PBE", "chgnet:0.3.0"), ("chgnet:r2scan", "diep:diep_fold1")),
        ("mfP,c30 | mfR,diep", ("sevenn:7net-mf-0@PBE", "chgnet:0.3.0"),
         ("sevenn:7net-mf-0@R2SCAN", "diep:diep_fold1")),
        ("7n0,c30 | diep", ("sevenn:7net-0", "chgnet:0.3.0"), ("diep:diep_fold1",)),
        ("7n0,mfP,c30 | diep", ("sevenn:7net-0", "sevenn:7net-mf-0@PBE", "chgnet:0.3.0"), ("diep:diep_fold1",)),
        ("c30,c20 | diep (CHGNet only)", ("chgnet:0.3.0", "chgnet:0.2.0"), ("diep:diep_fold1",)),
        ("3 r2SCAN as predictors", R2SCAN, ()),
        ("all 8 as predictors*", CANDIDATES, ()),
    ]
    return rows


def load_cache(specs, configs, cache: Path):
    """Per-member (energies, forces, seconds) over the configs every member has; keys kept."""
    keys = [k for k, _, _ in configs
            if all(cache_file(cache, s, k).exists() for s in specs)]
    data = {}
    for spec in specs:
        per = [np.load(cache_file(cache, spec, k)) for k in keys]
        data[spec] = ([float(p["energy"]) for p in per], [p["forces"] for p in per],
                      np.array([float(p["seconds"]) for p in per]))
    return keys, data


def score(preds, wits, keys, data, dft, boot: int, seed: int):
    from hetens.core.uncertainty import compute_uncertainty, max_force_error, weighted_mean

    members = tuple(preds) + tuple(wits)
    us, eps, sq, count = [], [], 0.0, 0
    for j, key in enumerate(keys):
        all_forces = np.stack([data[s][1][j] for s in members])
        f_ret = weighted_mean(all_forces[: len(preds)])
        us.append(compute_uncertainty(all_forces))  # uniform U weights over all members
        eps.append(max_force_error(f_ret, dft[key]))
        sq += float(((f_ret - dft[key]) ** 2).sum())
        count += dft[key].size
    us, eps = np.array(us), np.array(eps)
    rho = spearman(us, eps)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(boot):
        pick = rng.integers(0, len(keys), len(keys))
        samples.append(spearman(us[pick], eps[pick]))
    lo, hi = np.percentile(samples, [2.5, 97.5])
    half = len(keys) // 2
    rho_a = spearman(us[:half], eps[:half])
    rho_b = spearman(us[half:], eps[half:])
    rmse = np.sqrt(sq / count)
    return rho, lo, hi, rho_a, rho_b, rmse


def search(keys, data, dft, step, top: int) -> None:
    """Every PBE+U predictor subset with every r2SCAN witness subset (at least two members):
    ranked by rho on half A only, with rho on half B beside it, so the choice made on A
    is confirmed on configurations it did not see."""
    from itertools import combinations

    half = len(keys) // 2
    rows = []
    pbe = [s for s in PBE_U if s in data]
    r2 = [s for s in R2SCAN if s in data]
    for p in range(1, len(pbe) + 1):
        for preds in combinations(pbe, p):
            for w in range(len(r2) + 1):
                for wits in combinations(r2, w):
                    if p + w < 2:
                        continue
                    us, eps = _u_eps(preds, wits, keys, data, dft)
                    rows.append((spearman(us[:half], eps[:half]), spearman(us[half:], eps[half:]),
                                 spearman(us, eps), sum(step[m] for m in preds + wits), preds, wits))
    rows.sort(key=lambda r: -r[0])
    print(f"search: {len(rows)} ensembles (PBE+U predictor subsets x r2SCAN witness subsets), "
          f"ranked by rho on half A; top {top}")
    print(f"{'rho A':>6s} {'rho B':>6s} {'rho':>6s} {'s/step54':>8s}  predictors | witnesses")
    for rho_a, rho_b, rho, cost, preds, wits in rows[:top]:
        print(f"{rho_a:6.3f} {rho_b:6.3f} {rho:6.3f} {cost:8.3f}  "
              f"{','.join(SHORT[m] for m in preds)} | {','.join(SHORT[m] for m in wits) or '-'}")
    print()


def _u_eps(preds, wits, keys, data, dft):
    from hetens.core.uncertainty import compute_uncertainty, max_force_error, weighted_mean

    members = tuple(preds) + tuple(wits)
    us, eps = [], []
    for j, key in enumerate(keys):
        all_forces = np.stack([data[s][1][j] for s in members])
        us.append(compute_uncertainty(all_forces))
        eps.append(max_force_error(weighted_mean(all_forces[: len(preds)]), dft[key]))
    return np.array(us), np.array(eps)


def table(configs, cache: Path, boot: int, seed: int, top: int = 0) -> None:
    specs = [s for s in CANDIDATES if (cache / slug(s)).is_dir()]
    keys, data = load_cache(specs, configs, cache)
    dft = {k: f for k, _, f in configs}
    natoms = {k: len(a) for k, a, _ in configs}
    print(f"{len(keys)} configurations with every member cached "
          f"({sum(natoms[k] for k in keys)} atoms); bootstrap {boot} resamples, seed {seed}; "
          f"halves A = first {len(keys) // 2}, B = the rest")
    print()
    print("per member: force RMSE vs DFT (eV/Å), mean s/config, median s/step at 54 atoms")
    step = {}
    for spec in specs:
        step[spec] = float(np.median(np.load(cache / slug(spec) / "step54.npz")["seconds"]))
        forces = data[spec][1]
        rmse = np.sqrt(sum(float(((f - dft[k]) ** 2).sum()) for f, k in zip(forces, keys))
                       / sum(dft[k].size for k in keys))
        print(f"  {spec:26s} {SHORT[spec]:5s} rmse {rmse:6.3f}  s/config {data[spec][2].mean():6.3f}"
              f"  s/step54 {step[spec]:6.3f}")
    print()
    head = (f"{'ensemble':32s} {'P':>2s} {'W':>2s} {'rho':>6s} {'95% CI':>15s} {'rho A':>6s} "
            f"{'rho B':>6s} {'RMSE':>6s} {'s/conf':>7s} {'s/step54':>8s}")
    print(head)
    print("-" * len(head))
    for name, preds, wits in candidate_rows():
        if not all(s in data for s in preds + wits):
            continue
        rho, lo, hi, rho_a, rho_b, rmse = score(preds, wits, keys, data, dft, boot, seed)
        members = preds + wits
        cost = sum(data[s][2].mean() for s in members)
        cost54 = sum(step[s] for s in members)
        print(f"{name:32s} {len(preds):2d} {len(wits):2d} {rho:6.3f} [{lo:6.3f},{hi:6.3f}] "
              f"{rho_a:6.3f} {rho_b:6.3f} {rmse:6.3f} {cost:7.3f} {cost54:8.3f}")
    print()
    print("* mixes levels of theory in F_ret: shown for its U only, never a usable default.")
    print()
    if top:
        search(keys, data, dft, step, top)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("data", nargs="?", default=str(ROOT / ".." / "shared" / "data" / "w_dft_dev.extxyz.xz"))
    parser.add_argument("--n", type=int, default=200, help="configurations in the subsample")
    parser.add_argument("--seed", type=int, default=0, help="subsample and bootstrap seed")
    parser.add_argument("--cache", default="bench_quality_cache", help="folder of per-member predictions")
    parser.add_argument("--members", nargs="*", default=list(CANDIDATES),
                        help="members to evaluate (default: all eight candidates)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--reverse", action="store_true",
                        help="evaluate the subsample from its end (a second process meets the first)")
    parser.add_argument("--md-repeats", type=int, default=5, help="timed calls on the 54-atom cell")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--search", type=int, default=0, metavar="TOP",
                        help="also rank every predictor x witness subset by rho on half A (print TOP)")
    parser.add_argument("--table-only", action="store_true", help="no evaluation, only the table")
    parser.add_argument("--steps-only", action="store_true",
                        help="only re-time the 54-atom step of --members, interleaved, then the table")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only, no table")
    args = parser.parse_args(argv)

    path = Path(args.data)
    if not path.is_file():
        print(f"bench_quality: data file {path} not found", file=sys.stderr)
        return 2
    configs = load_subsample(path, args.n, args.seed)
    cache = Path(args.cache)
    if not args.table_only:
        import torch

        torch.set_num_threads(args.threads)
        if args.steps_only:
            measure_steps(args.members, cache, args.md_repeats)
        else:
            evaluate(args.members, configs[::-1] if args.reverse else configs, cache, args.md_repeats)
    if not args.eval_only:
        table(configs, cache, args.bootstrap, args.seed, args.search)
    return 0


if __name__ == "__main__":
    sys.exit(main())
