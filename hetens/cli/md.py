"""``hetens md STRUCTURE``: monitored MD with the ensemble (the main job).

Exit codes: 0 completed, 3 halted by uncertainty, 2 bad input, 130 interrupted
(Ctrl-C: the run stops after the current step, keeping every logged row and frame).
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

#: hetens.monitor.dynamics.DYNAMICS and NPT_DYNAMICS, repeated so --help imports no ASE.
DYNAMICS = ("langevin", "nve", "berendsen", "npt-berendsen", "npt-mtk")
NPT_DYNAMICS = ("npt-berendsen", "npt-mtk")
EXIT_HALTED = 3
EXIT_INTERRUPTED = 130


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "md", help="run MD with the ensemble, logging U; flag and halt on high U",
        description="Molecular dynamics with a heterogeneous ensemble, watched by the universal "
        "uncertainty U: every observed step is logged (CSV), frames above --flag-above are "
        "written for DFT, and the run stops when U exceeds --halt-above. Exit code 0 when the run "
        "completes, 3 when it was halted by uncertainty, 2 for bad input.",
    )
    parser.add_argument("structure", help="any ASE-readable structure file")
    parser.add_argument("--index", help="frame of STRUCTURE to start from (default: -1, the last)")
    add_ensemble_options(parser)
    add_member_error_options(parser)
    add_driver_options(parser)
    md = parser.add_argument_group("dynamics")
    md.add_argument("--steps", type=int, default=200, help="MD steps (default 200)")
    md.add_argument("--timestep", type=float, default=2.0, help="time step in fs (default 2)")
    md.add_argument("--temperature", type=float, default=300.0,
                    help="temperature in K (default 300); the start velocities are drawn at it, so a run "
                    "from a lattice first settles near half of it (equipartition; the plot marks it)")
    md.add_argument("--dynamics", choices=DYNAMICS, default=None,
                    help="langevin (NVT, default), nve, berendsen (NVT), npt-berendsen (isotropic "
                    "Berendsen barostat: robust volume equilibration) or npt-mtk (isotropic "
                    "Martyna-Tobias-Klein NPT with Nose-Hoover chains: the NPT ensemble)")
    md.add_argument("--ensemble", dest="ensemble_deprecated", choices=DYNAMICS, default=None,
                    help=argparse.SUPPRESS)  # the old name of --dynamics
    md.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    md.add_argument("--pressure", type=float, default=None,
                    help="target pressure in GPa for npt-berendsen and npt-mtk (default 0)")
    md.add_argument("--barostat-time", type=float, default=None, metavar="FS",
                    help="barostat time constant in fs (Berendsen taup, MTK pdamp; default 1000)")
    md.add_argument("--bulk-modulus", type=float, default=None, metavar="GPA",
                    help="bulk modulus in GPa for npt-berendsen's coupling strength (default 100)")
    md.add_argument("--seed", type=int, default=0, help="seed for velocities and thermostat noise")
    md.add_argument("--interval", type=int, default=1, help="observe U every N steps (default 1)")
    out = parser.add_argument_group("monitoring and output")
    out.add_argument("--log", help="CSV log of U per step (default: STRUCTURE stem + .md.csv in the "
                     "current folder); the plot, flagged and halt files go next to it")
    out.add_argument("--traj", help="extxyz trajectory with U per frame")
    out.add_argument("--traj-interval", type=int, default=10, help="steps between trajectory frames (default 10)")
    out.add_argument("--flag-above", type=float, metavar="U", help="write frames with U above this (eV/A)")
    out.add_argument("--flagged", help="extxyz for flagged frames (default: LOG stem + .flagged.extxyz)")
    out.add_argument("--flag-spacing", type=int, default=0, help="minimum steps between flagged frames")
    out.add_argument("--halt-above", type=float, metavar="U", help="stop when U exceeds this (eV/A)")
    out.add_argument("--halt-consecutive", type=int, default=1,
                     help="observations in a row above --halt-above before stopping (default 1)")
    out.add_argument("--halt-file", help="extxyz for the last safe and offending frames "
                     "(default: LOG stem + .halt.extxyz)")
    out.add_argument("--no-plot", action="store_true", help="do not write the PNG plot of U")
    out.add_argument("--print-every", type=int, default=10,
                     help="when not on a terminal, print a progress line every N steps (default 10)")
    add_trust_options(parser)
    add_json_option(parser)
    add_config_option(parser)
    parser.set_defaults(func=run)


def _resolve_dynamics(args: argparse.Namespace) -> None:
    """``--ensemble`` (the old name of ``--dynamics``) still works, with a one-line notice on stderr."""
    old = getattr(args, "ensemble_deprecated", None)
    if old is not None:
        if args.dynamics is not None and args.dynamics != old:
            raise ValueError(f"--ensemble {old} and --dynamics {args.dynamics} disagree; give only --dynamics")
        print(f"hetens md: --ensemble is deprecated (it reads as the ensemble of models); use --dynamics {old}",
              file=sys.stderr)
        args.dynamics = old
    if args.dynamics is None:
        args.dynamics = "langevin"
    barostat = {"pressure": 0.0, "barostat_time": 1000.0, "bulk_modulus": 100.0}
    for name, default in barostat.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        elif args.dynamics not in NPT_DYNAMICS:
            raise ValueError(f"--{name.replace('_', '-')} applies to --dynamics npt-berendsen or npt-mtk; "
                             f"this run is {args.dynamics}")


def _title(args: argparse.Namespace) -> str:
    title = f"{args.dynamics} {args.temperature:g} K"
    return title + (f" {args.pressure:g} GPa" if args.dynamics in NPT_DYNAMICS else "")


def _beside(log: Path, suffix: str) -> Path:
    return log.with_name(log.stem + suffix)


def run(args: argparse.Namespace) -> int:
    from hetens.monitor import UncertaintyMonitor, plot_log, run_monitored
    from hetens.monitor.dynamics import check_md_settings, make_md
    from hetens.io.reading import iter_frames, no_frame_error

    human = sys.stderr if args.json else sys.stdout
    minimum = {"steps": 0, "flag_spacing": 0, "traj_interval": 1, "interval": 1, "print_every": 1,
               "halt_consecutive": 1}
    for name, lowest in minimum.items():
        if getattr(args, name) < lowest:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {lowest}; got {getattr(args, name)}")
    check_monitor_options(args)
    _resolve_dynamics(args)
    check_md_settings(args.timestep, args.temperature, args.dynamics, args.friction, pressure_GPa=args.pressure,
                      taup_fs=args.barostat_time, bulk_modulus_GPa=args.bulk_modulus)
    for name in ("flag_above", "halt_above"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive U in eV/A; got {value}")
    index = "-1" if args.index is None else args.index
    frames = [atoms for _, atoms in iter_frames(args.structure, index)]
    if not frames:
        total = sum(1 for _ in iter_frames(args.structure, ":")) if args.index is not None else None
        raise no_frame_error(args.structure, index, total=total, index_given=args.index is not None)
    atoms = frames[-1]
    atoms.calc = None
    log = Path(args.log) if args.log else Path(Path(args.structure).stem + ".md.csv")
    flagged, halt_file = check_monitor_outputs(args, log)

    plan = check_ensemble_args(args)  # checks the ensemble options (weights...) before loading
    driver_preflight(args, plan)
    calc = plan.build()
    with calc:  # closing stops worker processes, whatever happens
        atoms.calc = driven(args, calc)
        print(f"hetens md: {atoms.get_chemical_formula()} ({len(atoms)} atoms), "
              f"{len(calc.members)} members: {', '.join(calc.member_names)}{_driver_note(atoms.calc)}", file=human)
        dyn = make_md(atoms, timestep_fs=args.timestep, temperature_K=args.temperature,
                      dynamics=args.dynamics, friction_per_fs=args.friction, pressure_GPa=args.pressure,
                      taup_fs=args.barostat_time, bulk_modulus_GPa=args.bulk_modulus, seed=args.seed)
        start = int(dyn.nsteps)
        outcome = None
        with UncertaintyMonitor(
            dyn, log=log,
            flag_above=args.flag_above, flagged=flagged if args.flag_above is not None else None,
            flag_spacing=args.flag_spacing,
            halt_above=args.halt_above, halt_consecutive=args.halt_consecutive,
            halt_file=halt_file if args.halt_above is not None else None,
            trajectory=args.traj, trajectory_interval=args.traj_interval,
            flag_below=args.flag_below, failed=args.failed_path,
        ) as monitor, _Progress(args.steps, monitor, args.print_every, human) as progress:
            try:  # the first Ctrl-C stops after the current step; a second one at once
                outcome = run_monitored(dyn, args.steps, monitor, interval=args.interval, progress=progress,
                                        stop_on_interrupt=True)
            except KeyboardInterrupt:
                pass  # the observers close (flush, fsync) on leaving this block
    if outcome is None or outcome.interrupted:
        return _interrupted(args, int(dyn.nsteps) - start, monitor, log, atoms, human)

    print(outcome.summary(), file=human)
    for line in what_u_means(log, calc):
        print(line, file=human)
    print(f"log            {log}", file=human)
    if outcome.flagged:  # the flagged file exists only once a frame was flagged
        print(f"flagged        {flagged}", file=human)
    if outcome.failed_written:
        print(f"failed         {args.failed_path}", file=human)
    if args.traj:
        print(f"trajectory     {args.traj}", file=human)
    png = None
    if not args.no_plot and outcome.observed:
        png = plot_log(log, flag_above=args.flag_above, halt_above=args.halt_above,
                       halted_at=outcome.halted_at, **_temperature_line(args),
                       title=f"{atoms.get_chemical_formula()} {_title(args)}")
        print(f"plot           {png}", file=human)
    if args.json:
        summary = outcome.as_dict() | {"log": str(log), "plot": str(png) if png else None,
                                       "dynamics": args.dynamics, "members": calc.member_names,
                                       "driver": args.driver, "check_every": args.check_every,
                                       "weights": [float(w) for w in calc.weights]}
        print(json.dumps(summary))
    return EXIT_HALTED if outcome.halted else 0


def _driver_note(calc) -> str:
    """``; driver chgnet:0.3.0, ensemble checked every 10 steps`` for a driver run, else ``""``."""
    name = getattr(calc, "driver_name", None)
    return "" if name is None else f"; driver {name}, U checked every {calc.check_every} steps"


def _temperature_line(args) -> dict:
    """The plot's temperature line: the thermostat's target, or NVE's start temperature."""
    thermostat = getattr(args, "dynamics", None) != "nve"
    return {"target_temperature": args.temperature, "target_label": "target" if thermostat else "start"}


def _interrupted(args, steps_done: int, monitor, log: Path, atoms, human) -> int:
    """Ctrl-C: say where the run stopped and what was kept; plot what was logged; exit 130."""
    from hetens.monitor import plot_log

    kept = [f"log {log} has {monitor.logger.rows} rows"]
    if monitor.trajectory is not None:
        kept.append(f"trajectory {monitor.trajectory.path} has {monitor.trajectory.frames} frames")
    if monitor.flagger is not None:
        kept.append(f"flagged {monitor.flagger.path} has {monitor.flagger.flagged} frames"
                    if monitor.flagger.flagged else "0 frames flagged")
    print(f"hetens md: interrupted at step {steps_done} of {args.steps}; {', '.join(kept)}",
          file=sys.stderr, flush=True)
    if not args.no_plot and monitor.logger.rows:
        png = plot_log(log, flag_above=args.flag_above, halt_above=args.halt_above, **_temperature_line(args),
                       title=f"{atoms.get_chemical_formula()} {_title(args)} "
                       f"(interrupted)")
        print(f"plot           {png}", file=human)
    if args.json:
        print(json.dumps({"status": "interrupted", "steps_done": steps_done, "observed": monitor.logger.rows,
                          "log": str(log), "trajectory": args.traj}))
    return EXIT_INTERRUPTED


def check_monitor_outputs(args: argparse.Namespace, log: Path, **more: Path) -> tuple[Path, Path]:
    """The flagged and halt file paths (``--flagged``/``--halt-file`` or beside ``log``), with every
    output of a monitored run (log, trajectory, flagged, halt, plot and ``more``, e.g. ``-o``)
    checked before any model loads: writable, not the input, no two alike, frames as extxyz."""
    from hetens.monitor.observers import check_extxyz_name

    flagged = Path(args.flagged) if args.flagged else _beside(log, ".flagged.extxyz")
    halt_file = Path(args.halt_file) if args.halt_file else _beside(log, ".halt.extxyz")
    outputs = {**more, "--log": log, "--traj": args.traj and Path(args.traj)}
    args.failed_path = None
    if getattr(args, "flag_below", None) is not None:
        args.failed_path = Path(args.failed) if getattr(args, "failed", None) else _beside(log, ".failed.extxyz")
        outputs["--failed"] = args.failed_path
    if args.flag_above is not None:
        outputs["--flagged"] = flagged
    if args.halt_above is not None:
        outputs["--halt-file"] = halt_file
    if not args.no_plot:
        outputs["plot"] = log.with_suffix(".png")
    check_outputs(Path(args.structure), {k: v for k, v in outputs.items() if v})
    for option in ("--traj", "--flagged", "--halt-file", "--failed"):
        if outputs.get(option):
            check_extxyz_name(outputs[option])  # frames with U: extxyz only
    return flagged, halt_file


def check_outputs(structure: Path, outputs: dict[str, Path]) -> None:
    """Before any model loads: every output is writable, none is the input, no two coincide."""
    from hetens.io.files import ensure_writable

    seen: dict[Path, str] = {structure.resolve(): "STRUCTURE"}
    for option, path in outputs.items():
        ensure_writable(path)
        resolved = path.resolve()
        if resolved in seen:
            raise ValueError(f"{option} {path} is also {seen[resolved]}; give it another name")
        seen[resolved] = f"{option} {path}"


class _Progress:
    """MD steps on :class:`hetens.io.progress.Progress`: a bar with the current U on a
    terminal; a plain line every N steps otherwise."""

    def __init__(self, total: int, monitor, every: int, stream) -> None:
        from hetens.io.progress import Progress

        self.monitor = monitor
        self.progress = Progress(total, "auto", unit="step", label="", every=every, line=self._line, stream=stream)

    def __enter__(self):
        return self

    def __call__(self, done: int) -> None:
        last = getattr(self.monitor, "last_checked", None) or self.monitor.last
        u = f"{last.uncertainty:.4f}" if last else "-"
        temp = f"{last.temperature:.0f}K" if last and last.temperature is not None else ""
        self.progress.update(done - self.progress.count, postfix=f"U={u} eV/A {temp}")

    def _line(self, progress) -> str:
        last = getattr(self.monitor, "last_checked", None) or self.monitor.last
        u = f"{last.uncertainty:.4f}" if last else "-"
        temp = f"  T {last.temperature:7.1f} K" if last and last.temperature is not None else ""
        time = f"  t {last.time_fs:8.1f} fs" if last and last.time_fs is not None else ""
        return f"step {progress.count:>6}/{progress.total}{time}  U {u} eV/A{temp}"

    def __exit__(self, *exc) -> None:
        self.progress.close()
