"""Start-up: time from ``hetens md`` to the first printed U, and where it goes.

1. Runs ``hetens md`` (the default ensemble, the 54-atom W example, 1 step,
   ``--print-every 1``) as a user would and times each line of its output
   from the moment the process starts: the header (imports and model loads
   done) and the first ``U``. Median of ``--runs`` fresh processes.
2. In fresh interpreters, the same start split into its parts: ``import
   hetens``, ``import torch``, each family's package, each member's load
   (``hetens.load_member``: the adapter's further imports and the model
   build) and the first evaluation of the ensemble.
3. Loading the members one after another against loading them concurrently
   in threads (``ThreadPoolExecutor``), each in a fresh interpreter, to show
   whether concurrent loading helps (imports and TorchScript compilation hold
   the GIL, so it is not expected to).

    .venv/bin/python benchmarks/bench_startup.py [--runs 3] [--models SPEC ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "data" / "W_bcc_54.extxyz"
HETENS = Path(sys.executable).with_name("hetens")

PARTS = r"""
import json, sys, time
specs = json.loads(sys.argv[1])
times = {}
def mark(name, start):
    times[name] = time.perf_counter() - start
    return time.perf_counter()
t = time.perf_counter()
import hetens
t = mark("import hetens", t)
import torch
t = mark("import torch", t)
from hetens.catalogue.spec import parse_spec
from hetens.families import FAMILIES
for family in dict.fromkeys(parse_spec(s).family for s in specs):
    for package in FAMILIES[family].packages:
        __import__(package)
        t = mark(f"import {package}", t)
members = []
for spec in specs:
    members.append(hetens.load_member(spec, device="cpu"))
    t = mark(f"load {spec}", t)
from ase.io import read
atoms = read(sys.argv[2])
atoms.calc = hetens.HeterogeneousEnsembleCalculator(members[:-1], witnesses=members[-1:])
atoms.get_forces()
mark("first evaluation (energy, forces, U)", t)
print(json.dumps(times))
"""

LOADS = r"""
import json, sys, time
start = time.perf_counter()
import hetens, torch
specs = json.loads(sys.argv[1])
if sys.argv[2] == "threads":
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(specs)) as pool:
        list(pool.map(lambda s: hetens.load_member(s, device="cpu"), specs))
else:
    for s in specs:
        hetens.load_member(s, device="cpu")
print(time.perf_counter() - start)
"""


def hetens_md_times() -> tuple[float, float]:
    """(seconds to the header line, seconds to the first line with U) of one ``hetens md``."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        process = subprocess.Popen(
            [str(HETENS), "md", str(EXAMPLE), "--steps", "1", "--interval", "1", "--print-every", "1",
             "--no-plot", "--log", str(Path(folder) / "md.csv")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder,
        )
        header = first_u = None
        for line in process.stdout:
            now = time.perf_counter() - start
            if header is None and line.startswith("hetens md:"):
                header = now
            if first_u is None and " U " in line:
                first_u = now
        process.wait()
        if process.returncode != 0 or header is None or first_u is None:
            raise SystemExit(f"hetens md failed (exit code {process.returncode}) or printed no header or U")
    return header, first_u


def fresh(code: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]


def main() -> None:
    import hetens

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=[*hetens.DEFAULT_MEMBERS, *hetens.DEFAULT_WITNESSES],
                        help="members, the last one taken as the witness in part 2 (default: the default ensemble)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at start")

    runs = [hetens_md_times() for _ in range(args.runs)]
    print(f"1. hetens md {EXAMPLE.name} (default ensemble), median of {args.runs} fresh processes:")
    print(f"   header printed (imports + loads): {statistics.median(r[0] for r in runs):6.2f} s")
    print(f"   first U printed:                  {statistics.median(r[1] for r in runs):6.2f} s")

    specs = json.dumps(args.models)
    parts = [json.loads(fresh(PARTS, specs, str(EXAMPLE))) for _ in range(args.runs)]
    print(f"2. the same start in parts (fresh interpreter, median of {args.runs}):")
    for name in parts[0]:
        print(f"   {name:<45} {statistics.median(p[name] for p in parts):6.2f} s")
    print(f"   {'total':<45} {statistics.median(sum(p.values()) for p in parts):6.2f} s")

    ways = {way: [] for way in ("one after another", "threads")}
    for _ in range(args.runs):  # interleaved
        for way in ways:
            ways[way].append(float(fresh(LOADS, specs, "threads" if way == "threads" else "seq")))
    print("3. import torch + load every member, fresh interpreter (median):")
    for way, times in ways.items():
        print(f"   {way:<20} {statistics.median(times):6.2f} s")
    print(f"   threads / one after another: {statistics.median(ways['threads']) / statistics.median(ways['one after another']):.3f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
