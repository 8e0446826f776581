"""``hetens explore``: an exploration campaign, one monitored MD per structure x condition (docs/exploration.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hetens.cli.config import add_config_option
from hetens.cli.monitor_options import add_driver_options, add_trust_options, check_monitor_options, driver_preflight
from hetens.cli.options import add_ensemble_options, add_json_option, add_member_error_options, check_ensemble_args

#: hetens.monitor.dynamics.DYNAMICS split by cell, repeated so --help imports no ASE.
NVT_DYNAMICS = ("langevin", "nve", "berendsen")
NPT_DYNAMICS = ("npt-berendsen", "npt-mtk")
EXIT_SOME_FAILED = 4


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "explore", help="exploration campaign: MD of many structures x conditions, candidates for DFT",
        description="Runs one monitored MD per structure of STRUCTURES and condition (temperature, pressure -> "
        "NPT, steps, seed), one after another or on a Dask cluster (--cluster), resumably; collects the "
        "candidates of all runs (U in the trust window) into OUT/candidates.extxyz with provenance, "
        "near-duplicates removed, ready for 'hetens select' or DFT. Exit 0 when every run finished (completed "
        "or halted), 4 when some failed (the others are complete; OUT/summary.csv names them), 2 for bad input.",
    )
    parser.add_argument("structures", help="ASE-readable file; every frame is a starting structure")
    parser.add_argument("-o", "--out", required=False, help="output folder (default: STRUCTURES stem + .explore)")
    add_ensemble_options(parser)
    add_member_error_options(parser)
    add_driver_options(parser)
    grid = parser.add_argument_group("conditions (a grid: every temperature x pressure x seed)")
    grid.add_argument("--temperatures", nargs="+", type=float, metavar="K", help="temperatures in K (default 300)")
    grid.add_argument("--pressures", nargs="+", type=float, metavar="GPA",
                      help="pressures in GPa: NPT runs (--npt-dynamics); default: constant volume")
    grid.add_argument("--steps", type=int, default=200, help="MD steps per run (default 200)")
    grid.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds (default 0)")
    grid.add_argument("--conditions", nargs="+", metavar="T=..,P=..,steps=..,seed=..",
                      help="explicit conditions instead of the grid, e.g. T=300 T=1200,P=5,steps=500 "
                      "(in a --config YAML: a list of such strings)")
    md = parser.add_argument_group("dynamics")
    md.add_argument("--timestep", type=float, default=2.0, help="time step in fs (default 2)")
    md.add_argument("--dynamics", choices=NVT_DYNAMICS, default="langevin",
                    help="constant-volume dynamics (default langevin)")
    md.add_argument("--npt-dynamics", choices=NPT_DYNAMICS, default="npt-berendsen",
                    help="dynamics of the runs with a pressure (default npt-berendsen)")
    md.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    mon = parser.add_argument_group("monitoring and candidates")
    mon.add_argument("--flag-spacing", type=int, default=0, help="minimum steps between candidates of one run")
    mon.add_argument("--halt-above", type=float, metavar="U", help="stop a run when U exceeds this (eV/A)")
    mon.add_argument("--max-candidates", type=int, metavar="N", help="keep at most N candidates (highest U first)")
    mon.add_argument("--dedup-tol", type=float, metavar="D",
                     help="candidates whose radial distribution fingerprints differ by less than D (relative L2) "
                     "are duplicates (default 0.02: one frame per phase and density among similar cells; 0.005: "
                     "only copies; 0: only identical frames; measured in docs/exploration.md)")
    add_trust_options(parser, flag_above=True)
    cl = parser.add_argument_group("cluster (Dask; the options of 'hetens score --cluster')")
    cl.add_argument("--cluster", metavar="SPEC",
                    help="run on Dask: local:N, a scheduler address (tcp://host:8786) or a YAML cluster file")
    cl.add_argument("--worker-threads", type=int, metavar="N", help="torch threads per Dask worker")
    parser.add_argument("--restart", action="store_true", help="discard the runs in OUT and start again")
    parser.add_argument("--retry-failed", action="store_true", help="run again the runs that failed before")
    add_json_option(parser)
    add_config_option(parser)
    parser.set_defaults(func=run)


def parse_condition(text: str):
    """``T=1200,P=5,steps=500,seed=1`` (also ``temperature=``, ``pressure=``) -> :class:`Condition`."""
    from hetens.explore.conditions import conditions_from_list

    names = {"t": "temperature", "temperature": "temperature", "p": "pressure", "pressure": "pressure",
             "steps": "steps", "seed": "seed"}
    item = {}
    for part in str(text).replace(" ", ",").split(","):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or key.strip().lower() not in names:
            raise ValueError(f"--conditions {text!r}: expected KEY=VALUE with KEY one of T, P, steps, seed")
        item[names[key.strip().lower()]] = value.strip()
    return item


def build_conditions(args: argparse.Namespace) -> list:
    from hetens.explore.conditions import condition_grid, conditions_from_list

    if args.conditions:
        if args.temperatures or args.pressures or args.seeds:
            raise ValueError("give --conditions or the grid (--temperatures, --pressures, --seeds), not both")
        items = [parse_condition(text) for text in args.conditions]
        return conditions_from_list(items, default_steps=args.steps)
    return condition_grid(args.temperatures or [300.0], args.pressures, args.steps, args.seeds or [0])


def settings_from_args(args: argparse.Namespace):
    from hetens.explore.campaign import ExploreSettings

    return ExploreSettings(
        timestep_fs=args.timestep, dynamics=args.dynamics, npt_dynamics=args.npt_dynamics,
        friction_per_fs=args.friction, flag_above=args.flag_above, flag_below=args.flag_below,
        flag_spacing=args.flag_spacing, halt_above=args.halt_above, driver=args.driver,
        check_every=args.check_every,
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that needs no model: numbers, the window, the driver's options, the conditions."""
    check_monitor_options(args)
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0; got {args.steps}")
    if args.timestep <= 0:
        raise ValueError(f"--timestep must be > 0 fs; got {args.timestep}")
    if args.flag_spacing < 0:
        raise ValueError(f"--flag-spacing must be >= 0; got {args.flag_spacing}")
    for name in ("flag_above", "halt_above"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive U in eV/A; got {value}")
    if args.max_candidates is not None and args.max_candidates < 1:
        raise ValueError(f"--max-candidates must be >= 1; got {args.max_candidates}")
    if args.dedup_tol is not None and args.dedup_tol < 0:
        raise ValueError(f"--dedup-tol must be >= 0; got {args.dedup_tol}")
    if args.worker_threads is not None and args.worker_threads < 1:
        raise ValueError(f"--worker-threads must be >= 1; got {args.worker_threads}")
    if args.cluster:
        from hetens.distributed.cluster import parse_cluster_spec

        parse_cluster_spec(args.cluster)


def run(args: argparse.Namespace) -> int:
    from hetens.cli.options import ensemble_options
    from hetens.explore.campaign import read_structures, run_campaign

    human = sys.stderr if args.json else sys.stdout
    check_arguments(args)
    conditions = build_conditions(args)
    frames = read_structures(args.structures)
    out = Path(args.out) if args.out else Path(Path(args.structures).stem + ".explore")
    plan = check_ensemble_args(args)
    driver_preflight(args, plan)
    print(f"hetens explore: {len(frames)} structures x {len(conditions)} conditions = "
          f"{len(frames) * len(conditions)} runs -> {out}" + (f" on {args.cluster}" if args.cluster else ""),
          file=human, flush=True)
    settings = settings_from_args(args)
    common = dict(settings=settings, restart=args.restart, retry_failed=args.retry_failed,
                  max_candidates=args.max_candidates, dedup_tol=args.dedup_tol,
                  progress=lambda line: print(line, file=human, flush=True))
    if args.cluster:
        from hetens.distributed.ensemble_spec import EnsembleSpec

        ensemble = EnsembleSpec.from_options(**ensemble_options(args))
        result = run_campaign(frames, conditions, out, ensemble, cluster=args.cluster,
                              worker_threads=args.worker_threads, **common)
    else:
        with plan.build() as calc:
            if args.driver is not None:
                from hetens.monitor.driver import resolve_driver

                resolve_driver(args.driver, calc)  # an ensemble file's members are known only now
            result = run_campaign(frames, conditions, out, calc, **common)
    print(format_summary(result), file=human)
    if args.json:
        print(json.dumps({"out": str(out), "runs": len(result.records), "computed": result.computed,
                          "reused": result.reused, "candidates": result.candidates,
                          "candidates_found": result.candidates_found,
                          "candidates_distinct": result.candidates_distinct, "failed_frames": result.failed_frames,
                          "files": result.files,
                          "failed_runs": [r["run"] for r in result.records if r.get("status") == "failed"]}))
    return EXIT_SOME_FAILED if any(r.get("status") == "failed" for r in result.records) else 0


#: Up to this many runs the summary prints a line per run; above, the counts and the highest-U runs.
RUNS_LISTED = 30


def format_summary(result) -> str:
    """The campaign's outcome: a line per run (up to :data:`RUNS_LISTED`, else the runs of highest U and
    every failed run), the counts of outcomes and checked frames, and where the files are."""
    records = result.records

    def line(r) -> str:
        def num(key, fmt="{:.4f}"):
            value = r.get(key)
            return "-" if value is None else fmt.format(value)
        return (f"{r['run']:<34} {r.get('status', '?'):<10} {num('steps_done', '{}'):>6} {num('u_min'):>8} "
                f"{num('u_max'):>8} {num('accurate', '{}'):>5} {num('candidate', '{}'):>5} {num('failed', '{}'):>5}")

    header = f"{'run':<34} {'status':<10} {'steps':>6} {'U min':>8} {'U max':>8} {'acc':>5} {'cand':>5} {'fail':>5}"
    failed = [r for r in records if r.get("status") == "failed"]
    if len(records) <= RUNS_LISTED:
        shown, lines = records, [header]
    else:
        ranked = sorted((r for r in records if r.get("u_max") is not None), key=lambda r: -float(r["u_max"]))
        shown = ranked[:5] + failed
        lines = [f"the 5 runs of highest U{' and every failed run' if failed else ''} "
                 f"(all {len(records)} in summary.csv):", header]
    for r in shown:
        lines.append(line(r))
        if r.get("status") == "failed":
            lines.append(f"{'':<34} error: {r.get('error')}")
    statuses = {}
    for r in records:
        statuses[r.get("status", "?")] = statuses.get(r.get("status", "?"), 0) + 1
    lines.append(f"runs           {len(records)} ({len(result.computed)} run now, {len(result.reused)} "
                 f"finished before): " + ", ".join(f"{n} {s}" for s, n in statuses.items())
                 + (f"; FAILED: {', '.join(r['run'] for r in failed)}" if failed else ""))
    if any(r.get("accurate") is not None for r in records):
        totals = [sum(int(r.get(level) or 0) for r in records) for level in ("accurate", "candidate", "failed")]
        lines.append("checked frames accurate {}, candidate {}, failed {}".format(*totals))
    duplicates = result.candidates_found - result.candidates_distinct
    capped = result.candidates_distinct - result.candidates
    lines.append(f"candidates     {result.candidates} kept of {result.candidates_found} ({duplicates} near-duplicates"
                 + (f", {capped} more over --max-candidates, the lowest U" if capped else "")
                 + f") -> {result.files.get('candidates')}")
    lines.append(f"failed frames  {result.failed_frames} (U above the window) -> {result.files.get('failed')}")
    lines.append(f"summary        {result.files.get('summary')}, {result.files.get('figure')}")
    return "\n".join(lines)
