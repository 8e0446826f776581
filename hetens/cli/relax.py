"""``hetens relax STRUCTURE``: geometry optimisation with the ensemble, U logged at every step.

janus-core's ``geomopt``, watched by U as ``hetens md`` is. Exit codes: 0
completed (converged or out of steps: the summary says which), 3 halted by
uncertainty, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hetens.cli.config import add_config_option
from hetens.cli.monitor_options import (
    add_driver_options,
    add_trust_options,
    check_monitor_options,
    driven,
    driver_preflight,
    what_u_means,
)
from hetens.cli.options import (
    add_ensemble_options,
    add_json_option,
    add_member_error_options,
    check_ensemble_args,
)

EXIT_HALTED = 3
EXIT_INTERRUPTED = 130
#: hetens.jobs.relax.OPTIMIZERS, repeated so --help imports no ASE.
OPTIMIZERS = ("BFGS", "FIRE")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "relax", help="relax a structure (and its cell) with the ensemble, logging U at every step",
        description="Geometry optimisation (BFGS or FIRE; with --cell also the cell, through ASE's "
        "FrechetCellFilter) with a heterogeneous ensemble. U is logged at every optimiser step (CSV), "
        "frames above --flag-above are written, the run stops when U exceeds --halt-above, and the "
        "relaxed structure is written with U (extxyz). Exit code 0 when the run completes (converged "
        "or out of steps), 3 when halted by uncertainty, 2 for bad input.",
    )
    parser.add_argument("structure", help="any ASE-readable structure file")
    parser.add_argument("--index", default="-1", help="frame of STRUCTURE to relax (default: last)")
    add_ensemble_options(parser)
    add_member_error_options(parser)
    add_driver_options(parser)
    opt = parser.add_argument_group("optimiser")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="BFGS", help="ASE optimiser (default BFGS)")
    opt.add_argument("--fmax", type=float, default=0.05,
                     help="converged when every force is below this, eV/A (default 0.05)")
    opt.add_argument("--steps", type=int, default=500, help="most optimiser steps (default 500)")
    opt.add_argument("--cell", action="store_true",
                     help="relax the cell too (ASE FrechetCellFilter; needs a periodic structure)")
    opt.add_argument("--scalar-pressure", type=float, default=0.0, metavar="GPA",
                     help="external pressure for --cell, GPa (default 0)")
    out = parser.add_argument_group("monitoring and output")
    out.add_argument("-o", "--output", help="relaxed structure with U, extxyz (default: STRUCTURE stem + "
                     ".relaxed.extxyz in the current folder)")
    out.add_argument("--log", help="CSV log of U per optimiser step (default: STRUCTURE stem + .relax.csv); "
                     "the plot, flagged and halt files go next to it")
    out.add_argument("--traj", help="extxyz trajectory of the optimiser steps with U")
    out.add_argument("--flag-above", type=float, metavar="U", help="write frames with U above this (eV/A)")
    out.add_argument("--flagged", help="extxyz for flagged frames (default: LOG stem + .flagged.extxyz)")
    out.add_argument("--halt-above", type=float, metavar="U", help="stop when U exceeds this (eV/A)")
    out.add_argument("--halt-file", help="extxyz for the last safe and offending frames "
                     "(default: LOG stem + .halt.extxyz)")
    out.add_argument("--no-plot", action="store_true", help="do not write the PNG plot of U")
    out.add_argument("--print-every", type=int, default=10, help="print a progress line every N steps (default 10)")
    add_trust_options(parser)
    add_json_option(parser)
    add_config_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hetens.io.files import write_frames_atomic
    from hetens.cli.md import check_monitor_outputs
    from hetens.monitor import plot_log
    from hetens.jobs.relax import check_relax_settings, run_relaxation
    from hetens.io.reading import iter_frames

    human = sys.stderr if args.json else sys.stdout
    if args.print_every < 1:
        raise ValueError(f"--print-every must be >= 1; got {args.print_every}")
    check_monitor_options(args)
    check_relax_settings(args.fmax, args.steps, args.optimizer, args.scalar_pressure)
    if args.scalar_pressure and not args.cell:
        raise ValueError("--scalar-pressure applies to a cell relaxation; add --cell")
    for name in ("flag_above", "halt_above"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive U in eV/A; got {value}")
    frames = [atoms for _, atoms in iter_frames(args.structure, args.index)]
    if len(frames) != 1:
        raise ValueError(f"{args.structure}: --index {args.index} selects {len(frames)} frames; "
                         "hetens relax relaxes one")
    atoms = frames[0]
    atoms.calc = None
    if args.cell and (not atoms.pbc.all() or atoms.cell.rank < 3):
        raise ValueError(f"{args.structure}: --cell needs a structure periodic in all three directions; "
                         f"{atoms.get_chemical_formula()} has pbc={atoms.pbc.tolist()}")
    stem = Path(args.structure).stem
    log = Path(args.log) if args.log else Path(stem + ".relax.csv")
    output = Path(args.output) if args.output else Path(stem + ".relaxed.extxyz")
    if output.suffix.lower() not in (".extxyz", ".xyz"):
        raise ValueError(f"-o {output}: the relaxed structure is written as extended XYZ with U; "
                         "use a .extxyz (or .xyz) name")
    flagged, halt_file = check_monitor_outputs(args, log, **{"-o": output})

    plan = check_ensemble_args(args)
    driver_preflight(args, plan)
    calc = plan.build()
    relaxation = None
    state = {"done": 0, "rows": 0}
    with calc:
        atoms.calc = driven(args, calc)
        kind = f"{args.optimizer}" + (f" with the cell at {args.scalar_pressure:g} GPa" if args.cell else "")
        print(f"hetens relax: {atoms.get_chemical_formula()} ({len(atoms)} atoms), {kind}, fmax {args.fmax:g} "
              f"eV/A; {len(calc.members)} members: {', '.join(calc.member_names)}", file=human)

        def progress(done: int, monitor) -> None:
            last = monitor.last_checked
            state.update(done=done, rows=monitor.logger.rows if monitor.logger else 0)
            if last is None or (done % args.print_every and done != args.steps):
                return
            forces = last.results["forces"]
            fmax = float((forces**2).sum(axis=1).max() ** 0.5) if len(forces) else 0.0
            cell = f"  P {last.pressure_GPa:8.3f} GPa  V {last.volume:9.3f} A^3" \
                if last.pressure_GPa is not None else ""
            print(f"step {done:>5}  E {last.energy:14.6f} eV  max|F| {fmax:.4f} eV/A  U {last.uncertainty:.4f} "
                  f"eV/A{cell}", file=human, flush=True)

        try:  # the first Ctrl-C stops after the current step; a second one at once
            relaxation = run_relaxation(
                atoms, fmax=args.fmax, steps=args.steps, optimizer=args.optimizer, cell=args.cell,
                scalar_pressure_GPa=args.scalar_pressure, log=log,
                flag_above=args.flag_above, flagged=flagged if args.flag_above is not None else None,
                halt_above=args.halt_above, halt_file=halt_file if args.halt_above is not None else None,
                trajectory=args.traj, progress=progress, stop_on_interrupt=True,
                flag_below=args.flag_below, failed=args.failed_path,
            )
        except KeyboardInterrupt:
            pass
    if relaxation is None or relaxation.outcome.interrupted:
        print(f"hetens relax: interrupted at step {state['done']} of {args.steps}; log {log} has {state['rows']} "
              "rows; no relaxed structure written", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps({"status": "interrupted", "steps_done": state["done"], "observed": state["rows"],
                              "log": str(log), "output": None}))
        return EXIT_INTERRUPTED

    outcome = relaxation.outcome
    print(outcome.summary(), file=human)
    for line in what_u_means(log, calc):
        print(line, file=human)
    final = f"final          E {relaxation.frame.get_potential_energy():.6f} eV  max|F| {relaxation.fmax:.4f} eV/A"
    if relaxation.volume is not None:
        final += f"  V {relaxation.volume:.3f} A^3"
    if relaxation.pressure_GPa is not None:
        final += f"  P {relaxation.pressure_GPa:.3f} GPa"
    print(final, file=human)
    written = None
    if not outcome.halted:  # a halted structure is in the halt file, not presented as relaxed
        write_frames_atomic(output, [relaxation.frame], format="extxyz")
        written = output
        print(f"relaxed        {output}", file=human)
    print(f"log            {log}", file=human)
    if args.flag_above is not None and outcome.flagged:
        print(f"flagged        {flagged}", file=human)
    png = None
    if not args.no_plot and outcome.observed:
        png = plot_log(log, flag_above=args.flag_above, halt_above=args.halt_above, halted_at=outcome.halted_at,
                       title=f"{atoms.get_chemical_formula()} relax {args.optimizer}" + (" cell" if args.cell else ""))
        print(f"plot           {png}", file=human)
    if args.json:
        summary = relaxation.as_dict() | {
            "output": str(written) if written else None, "log": str(log), "plot": str(png) if png else None,
            "members": calc.member_names, "weights": [float(w) for w in calc.weights],
        }
        print(json.dumps(summary))
    return EXIT_HALTED if outcome.halted else 0
