"""The observers one by one, on an ensemble of calculators you built yourself.

What it demonstrates:
    Any ASE calculators can be members. Here a SevenNet and a CHGNet
    calculator are constructed with their own packages' APIs (their weights
    ship inside the wheels, so this runs offline), wrapped with
    :meth:`hetens.Member.wrap` to declare their level of theory (PBE+U, so
    hetens may average their energies; it refuses to mix PBE+U with r2SCAN),
    and combined into a :class:`hetens.HeterogeneousEnsembleCalculator`.
    :class:`~hetens.monitor.UncertaintyLogger`,
    :class:`~hetens.monitor.FlagWriter` and
    :class:`~hetens.monitor.HaltOnUncertainty` are attached separately with
    ASE's ``dyn.attach(observer, interval=n)`` to a plain velocity-Verlet
    run, each on its own interval, and :func:`hetens.monitor.run_monitored`
    runs it, returning the halt as an outcome instead of an exception.

Run:
    .venv/bin/python examples/03_observers_with_own_calculators.py [OUT_DIR]
    (OUT_DIR defaults to ./runs/example03; ``--help`` lists the options)

Writes into OUT_DIR: ``nve.csv`` (U every step), ``nve.flagged.extxyz``
(observed every ``--flag-interval`` steps, written when U > ``--flag-above``)
and, on a halt, ``nve.halt.extxyz`` (last safe and offending frames).
Exit code 0 whether the run completed or was halted (both are outcomes);
other errors raise.

Why the thresholds (eV/Å):
    With these two members, 16 W atoms started with 2000 K of velocities in
    NVE (1557 K at step 0, 450 K at step 27 as kinetic energy turns into
    potential energy while the atoms leave their lattice sites): U is 0.14
    at the start, 0.30 by step 11, 0.40 by step 20 and past 0.5 at steps 26
    and 27. Flag above 0.3 (about twice the starting U) and halt above 0.5
    twice in a row: 8 frames flagged, halted at step 27 with step 25 as the
    last safe frame. Two members disagree less than five: on the same cell
    the default ensemble gives U = 0.33, so its thresholds are higher
    (example 01).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "W_bcc_16.extxyz"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="runs/example03", help="output folder (default runs/example03)")
    parser.add_argument("--steps", type=int, default=40, help="NVE steps of 2 fs (default 40)")
    parser.add_argument("--temperature", type=float, default=2000.0, help="initial velocities, K (default 2000)")
    parser.add_argument("--flag-above", type=float, default=0.3, help="flag frames with U above this, eV/A")
    parser.add_argument("--flag-interval", type=int, default=2, help="the flagger looks every N steps (default 2)")
    parser.add_argument("--halt-above", type=float, default=0.5, help="halt when U exceeds this, eV/A")
    parser.add_argument("--halt-consecutive", type=int, default=2,
                        help="observations in a row above --halt-above before halting (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial velocities")
    parser.add_argument("--device", default="cpu", help="torch device of both calculators (default cpu)")
    return parser.parse_args(argv)


def my_members(device: str):
    """Two calculators built the way each package documents it, declared PBE+U (MPtrj)."""
    from chgnet.model import CHGNet, CHGNetCalculator
    from sevenn.calculator import SevenNetCalculator

    from hetens import Member

    sevennet = SevenNetCalculator("7net-0", device=device)
    chgnet = CHGNetCalculator(CHGNet.load(model_name="0.3.0", use_device=device, verbose=False),
                              use_device=device)
    return [
        Member.wrap(sevennet, name="my-7net-0", level_of_theory="PBE+U", training_data="MPtrj"),
        Member.wrap(chgnet, name="my-chgnet-0.3.0", level_of_theory="PBE+U", training_data="MPtrj"),
    ]


def thermalize(atoms, temperature_K: float, seed: int) -> None:
    """Maxwell-Boltzmann velocities with zero total momentum (ASE 3.29 renamed the function)."""
    from ase.md import velocitydistribution as vd

    draw = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    draw(atoms, temperature_K=temperature_K, rng=np.random.default_rng(seed))
    vd.Stationary(atoms)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ase import units
    from ase.io import read
    from ase.md.verlet import VelocityVerlet

    from hetens import HeterogeneousEnsembleCalculator
    from hetens.monitor import FlagWriter, HaltOnUncertainty, UncertaintyLogger, read_log, run_monitored

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # Uniform weights; pass force_rmse=[...] (eV/A, e.g. from `hetens calibrate`) for the
    # paper's inverse-RMSE weights, or weights={"my-7net-0": 0.6, "my-chgnet-0.3.0": 0.4}.
    ensemble = HeterogeneousEnsembleCalculator(my_members(args.device))
    print("members:", ", ".join(f"{m.name} ({m.level_of_theory}, w={w:.2f})"
                                for m, w in zip(ensemble.members, ensemble.weights)))
    atoms = read(DATA)
    atoms.calc = ensemble
    thermalize(atoms, args.temperature, args.seed)
    dyn = VelocityVerlet(atoms, 2 * units.fs)

    with UncertaintyLogger(dyn, out / "nve.csv") as logger, \
            FlagWriter(dyn, out / "nve.flagged.extxyz", args.flag_above) as flagger:
        halter = HaltOnUncertainty(dyn, args.halt_above, consecutive=args.halt_consecutive,
                                   save_to=out / "nve.halt.extxyz")
        # Attached in this order, so the halting step is logged (and flagged) before the halt.
        dyn.attach(logger, interval=1)
        dyn.attach(flagger, interval=args.flag_interval)
        dyn.attach(halter, interval=1)
        outcome = run_monitored(dyn, args.steps)  # observers already attached: nothing to add

    rows = read_log(logger.path)
    print(f"status   {outcome.status} after {outcome.steps_done} steps ({outcome.wall_s:.1f} s)")
    print(f"U        {rows['U'].min():.3f} .. {rows['U'].max():.3f} eV/A over {len(rows['step'])} logged steps")
    print(f"flagged  {flagger.flagged} frames (U > {args.flag_above}) -> {flagger.path}")
    if outcome.halted:
        halt = outcome.halt
        print(f"halt     {halt}")
        safe = f"step {halt.last_safe.info['hetens_step']}" if halt.last_safe is not None else "none"
        print(f"         last safe frame: {safe}; offending frame's worst atom u = "
              f"{halt.atoms.arrays['hetens_u'].max():.3f} eV/A")
    print(f"log      {logger.path}")
    return 0


if __name__ == "__main__":
    import warnings

    # CHGNet warns once per structure about a detail of its own code; nothing to act on.
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
    sys.exit(main())
