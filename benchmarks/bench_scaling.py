"""Time and peak memory against system size: each member alone, the ensemble, an MD step.

Every point runs in a fresh Python process (this script started again with
``--point``), so the peak of one point is not the high-water mark of another:

- ``member SPEC``: one member loaded alone, evaluated through hetens' own path
  (:func:`hetens.core.group_evaluation.evaluate_alone`, as the ensemble evaluates it);
- ``ensemble``: the default ensemble (``hetens.default_ensemble()``: its
  predictors and witnesses) through the calculator (energy, forces, U);
- ``md``: Langevin steps of the default ensemble (``--md-steps``, after one);
- ``ensemble-glibc`` (``--glibc-threshold-too``): the ensemble with glibc's own
  mmap threshold (``HETENS_MMAP_THRESHOLD=0``), against hetens' 1 MiB.

Each point evaluates a rattled bcc W cube twice (energy and forces; the
second call is the one timed) and reports the process's peak resident memory
(``VmHWM``, which includes the loaded models and imported packages) and the
resident memory after loading, before any evaluation. On a GPU the peak is
``torch.cuda.max_memory_allocated`` as well. The table compares, per size,
the ensemble's peak with its largest member's (target <= 1.10) and its time
with the sum of its members'; a log-log figure shows both against atoms.

    .venv/bin/python benchmarks/bench_scaling.py --max-atoms 700
    .venv/bin/python benchmarks/bench_scaling.py --sizes 3 5 7 --no-md --figure docs/scaling.png

Sizes are cubic repeats of the 2-atom bcc cell: 3 -> 54, 4 -> 128, 5 -> 250,
7 -> 686, 9 -> 1458, 11 -> 2662, 14 -> 5488, 17 -> 9826 atoms. A point whose
process fails (killed by the OS, say) is reported as such and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CUBE_REPEATS = (3, 4, 5, 7, 9, 11, 14, 17)


def cell(repeat: int, seed: int = 1):
    """A rattled bcc W cube of ``2 * repeat**3`` atoms (a = 3.17 Å, 0.05 Å rattle)."""
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    return atoms


def rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``), bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _gpu_peak(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated())


def run_point(kind: str, spec: str | None, repeat: int, device: str, md_steps: int) -> dict:
    """One point in this process: load, evaluate twice (or MD), and measure."""
    import hetens
    from hetens.core.group_evaluation import evaluate_alone

    atoms = cell(repeat)
    if kind == "member":
        member = hetens.load_member(spec, device=device)
        load_rss = rss_bytes()
        times = []
        for seed in (1, 2):
            atoms = cell(repeat, seed)
            start = time.perf_counter()
            evaluate_alone(member, atoms, with_stress=False, force=True)
            times.append(time.perf_counter() - start)
    else:
        calc = hetens.default_ensemble(device=device)
        load_rss = rss_bytes()
        atoms.calc = calc
        times = []
        if kind in ("ensemble", "ensemble-glibc"):
            for seed in (1, 2):
                atoms = cell(repeat, seed)
                atoms.calc = calc
                start = time.perf_counter()
                atoms.get_forces()
                times.append(time.perf_counter() - start)
        else:
            from hetens.monitor import make_md

            dyn = make_md(atoms, timestep_fs=2.0, temperature_K=600, dynamics="langevin", seed=1)
            start = time.perf_counter()
            dyn.run(1)
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            dyn.run(md_steps)
            times.append((time.perf_counter() - start) / md_steps)
    return {
        "kind": kind, "spec": spec, "atoms": len(atoms), "device": device,
        "first_s": times[0], "second_s": times[1],
        "load_rss": load_rss, "peak_rss": rss_bytes("VmHWM"), "gpu_peak": _gpu_peak(device),
    }


def measure(kind: str, spec: str | None, repeat: int, device: str, md_steps: int) -> dict:
    """:func:`run_point` in a fresh process; ``{"error": ...}`` when that process fails."""
    command = [sys.executable, __file__, "--point", kind, spec or "-", str(repeat),
               "--device", device, "--md-steps", str(md_steps)]
    env = dict(os.environ)
    if kind == "ensemble-glibc":  # glibc's own mmap threshold (hetens' allocator setting off)
        env["HETENS_MMAP_THRESHOLD"] = "0"
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"kind": kind, "spec": spec, "atoms": 2 * repeat**3, "error": f"exit {done.returncode}: {tail}"}


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:.2f}"


def table(points: list[dict], members: list[str]) -> str:
    """A markdown table: per size, each member's and the ensemble's second-call time and peak RSS."""
    head = ["atoms"] + [f"{m} s / GB" for m in members] + ["ensemble s / GB", "ms/atom",
                                                             "ens / largest (RSS)", "ens / sum (time)",
                                                             "MD step s / GB",
                                                             "glibc's threshold: ens s / GB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sorted({p["atoms"] for p in points}):
        row = [str(n)]
        at = {(p["kind"], p["spec"]): p for p in points if p["atoms"] == n}
        alone = [at.get(("member", m)) for m in members]
        for p in alone:
            row.append("-" if p is None else (p.get("error", "failed")[:30] if "error" in p
                                              else f"{p['second_s']:.2f} / {_gb(p['peak_rss'])}"))
        ens = at.get(("ensemble", None))
        ok = ens is not None and "error" not in ens
        row.append(f"{ens['second_s']:.2f} / {_gb(ens['peak_rss'])}" if ok else
                   ("-" if ens is None else ens["error"][:30]))
        row.append(f"{1e3 * ens['second_s'] / n:.1f}" if ok else "-")
        good = [p for p in alone if p is not None and "error" not in p]
        if ok and members and len(good) == len(members):
            row.append(f"{ens['peak_rss'] / max(p['peak_rss'] for p in good):.2f}")
            row.append(f"{ens['second_s'] / sum(p['second_s'] for p in good):.2f}")
        else:
            row += ["-", "-"]
        md = at.get(("md", None))
        row.append("-" if md is None else (md["error"][:30] if "error" in md
                                           else f"{md['second_s']:.2f} / {_gb(md['peak_rss'])}"))
        plain = at.get(("ensemble-glibc", None))
        row.append("-" if plain is None else (plain["error"][:30] if "error" in plain else
                                              f"{plain['second_s']:.2f} / {_gb(plain['peak_rss'])}"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def figure(points: list[dict], members: list[str], path: str) -> None:
    """Log-log: seconds per call and peak RSS against atoms, per member and for the ensemble."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, spec, label in [("member", m, m) for m in members] + [("ensemble", None, "ensemble"),
                                                                     ("md", None, "MD step")]:
        good = sorted((p for p in points if p["kind"] == kind and p["spec"] == spec and "error" not in p),
                      key=lambda p: p["atoms"])
        if not good:
            continue
        n = [p["atoms"] for p in good]
        style = "-o" if kind != "member" else "--s"
        ax_t.loglog(n, [p["second_s"] for p in good], style, label=label)
        ax_m.loglog(n, [p["peak_rss"] / 1e9 for p in good], style, label=label)
    ax_t.set(xlabel="atoms", ylabel="s per call (second call)", title="time")
    ax_m.set(xlabel="atoms", ylabel="peak RSS [GB]", title="peak memory (process)")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--point", nargs=3, metavar=("KIND", "SPEC", "REPEAT"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(CUBE_REPEATS),
                        help="cubic repeats of the bcc cell (default: 3 4 5 7 9 11 14 17)")
    parser.add_argument("--max-atoms", type=int, default=None, help="leave out sizes above this many atoms")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--md-steps", type=int, default=3, help="timed MD steps per MD point (after one)")
    parser.add_argument("--no-md", action="store_true", help="leave out the MD points")
    parser.add_argument("--no-members", action="store_true", help="only the ensemble (and MD) points")
    parser.add_argument("--members", nargs="+", metavar="SPEC",
                        help="members measured alone (default: the default ensemble's; e.g. "
                        "sevenn:7net-mf-0@PBE@checkpoint=on)")
    parser.add_argument("--no-ensemble", action="store_true", help="only the members alone")
    parser.add_argument("--glibc-threshold-too", action="store_true",
                        help="also the ensemble with glibc's own mmap threshold (HETENS_MMAP_THRESHOLD=0), "
                        "side by side with hetens' 1 MiB")
    parser.add_argument("--json", help="write every point as JSON lines here (appended)")
    parser.add_argument("--figure", help="write the log-log figure here (PNG)")
    parser.add_argument("--from-json", nargs="+", metavar="JSONL",
                        help="no measuring: the table and figure of points written earlier with --json")
    args = parser.parse_args()

    if args.from_json:
        points = [json.loads(line) for path in args.from_json for line in open(path) if line.strip()]
        members = args.members or sorted({p["spec"] for p in points if p["kind"] == "member"})
        print(table(points, members))
        if args.figure:
            figure(points, members, args.figure)
        return

    if args.point:
        kind, spec, repeat = args.point
        print(json.dumps(run_point(kind, None if spec == "-" else spec, int(repeat), args.device, args.md_steps)))
        return

    from hetens.ensemble import DEFAULT_MEMBERS, DEFAULT_WITNESSES

    members = args.members or list(DEFAULT_MEMBERS) + list(DEFAULT_WITNESSES)
    sizes = [r for r in args.sizes if args.max_atoms is None or 2 * r**3 <= args.max_atoms]
    load = os.getloadavg()
    print(f"bench_scaling: sizes {[2 * r**3 for r in sizes]} atoms, device {args.device}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    points = []
    for repeat in sizes:
        plan = [] if args.no_members else [("member", m) for m in members]
        if not args.no_ensemble:
            plan.append(("ensemble", None))
        if args.glibc_threshold_too and not args.no_ensemble:
            plan.append(("ensemble-glibc", None))
        if not args.no_md and not args.no_ensemble:
            plan.append(("md", None))
        for kind, spec in plan:
            point = measure(kind, spec, repeat, args.device, args.md_steps)
            points.append(point)
            if args.json:
                with open(args.json, "a") as out:
                    out.write(json.dumps(point) + "\n")
            what = "error " + point["error"] if "error" in point else (
                f"{point['second_s']:.2f} s, peak {_gb(point['peak_rss'])} GB (after loading {_gb(point['load_rss'])})")
            print(f"  {point['atoms']:6d} atoms  {kind:8s} {spec or '':22s} {what}", flush=True)
    print()
    print(table(points, [] if args.no_members else members))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.figure:
        figure(points, [] if args.no_members else members, args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
