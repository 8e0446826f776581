"""Geometry optimisation with the ensemble, watched by U (what ``hetens relax`` runs).

The optimiser is ASE's (BFGS or FIRE), optionally on a ``FrechetCellFilter``
so the cell relaxes too; the observers are those of ``hetens md``
(:class:`~hetens.monitor.UncertaintyMonitor`): every optimiser step is logged
with U, frames above ``flag_above`` are written, U above ``halt_above``
stops the run. The log of a cell relaxation has ``P[GPa]`` and ``V[A^3]``
columns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from hetens.io.keys import U_KEY
from hetens.jobs.md import RunOutcome

__all__ = ["OPTIMIZERS", "Relaxation", "make_optimizer", "run_relaxation"]

#: Optimisers :func:`make_optimizer` builds (ASE's classes of those names).
OPTIMIZERS = ("BFGS", "FIRE")


def check_relax_settings(fmax: float, steps: int, optimizer: str, scalar_pressure_GPa: float = 0.0) -> None:
    """Refuse impossible settings (ValueError naming the value) before any model loads."""
    if not fmax > 0:
        raise ValueError(f"fmax must be > 0 eV/A; got {fmax}")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0; got {steps}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not np.isfinite(scalar_pressure_GPa):
        raise ValueError(f"the scalar pressure must be a finite number of GPa; got {scalar_pressure_GPa}")


def make_optimizer(atoms, *, optimizer: str = "BFGS", cell: bool = False, scalar_pressure_GPa: float = 0.0):
    """An ASE optimiser for ``atoms`` (calculator set), silent (no ASE log on stdout).

    Args:
        atoms: the structure, with ``atoms.calc`` set.
        optimizer: ``"BFGS"`` or ``"FIRE"``.
        cell: relax the cell too, through ASE's ``FrechetCellFilter``
            (``atoms`` must be periodic in all three directions).
        scalar_pressure_GPa: external pressure for the cell relaxation, GPa
            (0: relax to zero stress).

    Returns:
        The optimiser; its ``atoms`` is the filter when ``cell`` is true.
    """
    from ase import units

    check_relax_settings(1.0, 0, optimizer, scalar_pressure_GPa)
    target = atoms
    if cell:
        if not atoms.pbc.all() or atoms.cell.rank < 3:
            raise ValueError(
                f"a cell relaxation needs a structure periodic in all three directions with a full cell; "
                f"{atoms.get_chemical_formula()} has pbc={atoms.pbc.tolist()} (relax without --cell)"
            )
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(atoms, scalar_pressure=scalar_pressure_GPa * units.GPa)
    elif scalar_pressure_GPa:
        raise ValueError("a scalar pressure applies to a cell relaxation; add cell=True (--cell)")
    if optimizer == "FIRE":
        from ase.optimize import FIRE as Optimizer
    else:
        from ase.optimize import BFGS as Optimizer
    return Optimizer(target, logfile=None)


@dataclass(frozen=True)
class Relaxation:
    """How a relaxation ended.

    Attributes:
        outcome: the :class:`~hetens.monitor.RunOutcome` (``converged`` says
            whether ``fmax`` was reached; ``status`` is ``"halted"`` when U
            crossed ``halt_above``).
        frame: the final structure annotated with the ensemble's results and
            U (:func:`hetens.core.frames.annotate`, plus ``hetens_converged``,
            ``hetens_fmax`` and ``hetens_steps``), ready to write.
        fmax: largest force on an atom at the end, eV/Å.
        volume: final cell volume, Å^3 (``None`` without a cell).
        pressure_GPa: final pressure from the ensemble stress, GPa (``None``
            when the structure is not periodic).
    """

    outcome: RunOutcome
    frame: Any
    fmax: float
    volume: float | None
    pressure_GPa: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (the outcome's keys plus the final state)."""
        return self.outcome.as_dict() | {
            "fmax": float(self.fmax),
            "energy": float(self.frame.get_potential_energy()),
            "U": float(self.frame.info[U_KEY]),
            "volume": self.volume,
            "pressure_GPa": self.pressure_GPa,
        }


def run_relaxation(
    atoms,
    *,
    fmax: float = 0.05,
    steps: int = 500,
    optimizer: str = "BFGS",
    cell: bool = False,
    scalar_pressure_GPa: float = 0.0,
    calc=None,
    log: str | os.PathLike | IO[str] | None = None,
    flag_above: float | None = None,
    flagged: str | os.PathLike | None = None,
    flag_spacing: int = 0,
    halt_above: float | None = None,
    halt_consecutive: int = 1,
    halt_file: str | os.PathLike | None = None,
    trajectory: str | os.PathLike | None = None,
    trajectory_interval: int = 1,
    progress: Callable[[int, Any], None] | None = None,
    stop_on_interrupt: bool = False,
) -> Relaxation:
    """Relax ``atoms`` in place with the ensemble, logging U at every optimiser step.

    Args:
        atoms: the structure, with the ensemble as ``atoms.calc`` (or wrapped
            in it; then give ``calc``). Positions (and the cell, with
            ``cell``) are changed in place.
        fmax: convergence threshold on the largest force, eV/Å (with
            ``cell``, also on the cell's generalised forces).
        steps: most optimiser steps.
        optimizer, cell, scalar_pressure_GPa: see :func:`make_optimizer`.
        calc: the ensemble, when ``atoms.calc`` wraps it.
        log, flag_above, flagged, flag_spacing, halt_above,
            halt_consecutive, halt_file, trajectory, trajectory_interval: as
            for :class:`~hetens.monitor.UncertaintyMonitor` (U in eV/Å).
        progress: called after every step with the number of steps done and
            the monitor (whose ``last`` is the latest observation).
        stop_on_interrupt: graceful Ctrl-C, as for
            :func:`~hetens.monitor.run_monitored`: the first Ctrl-C ends the
            relaxation after the current step (``outcome.status ==
            "interrupted"``; ``frame`` is the structure reached, not relaxed),
            a second one raises ``KeyboardInterrupt`` at once.

    Returns:
        :class:`Relaxation`. A halt is ``outcome.status == "halted"``, not
        an exception; a member failing raises, with the log flushed.
    """
    from hetens.core.frames import annotate
    from hetens.monitor.observation import ensemble_pressure_GPa, ensemble_results
    from hetens.monitor.observers import UncertaintyMonitor
    from hetens.jobs.md import run_monitored

    check_relax_settings(fmax, steps, optimizer, scalar_pressure_GPa)
    opt = make_optimizer(atoms, optimizer=optimizer, cell=cell, scalar_pressure_GPa=scalar_pressure_GPa)
    with UncertaintyMonitor(
        opt, atoms, calc=calc, log=log, flag_above=flag_above, flagged=flagged, flag_spacing=flag_spacing,
        halt_above=halt_above, halt_consecutive=halt_consecutive, halt_file=halt_file,
        trajectory=trajectory, trajectory_interval=trajectory_interval,
    ) as monitor:
        step_progress = None if progress is None else (lambda done: progress(done, monitor))
        outcome = run_monitored(opt, steps, monitor, progress=step_progress, fmax=fmax,
                                stop_on_interrupt=stop_on_interrupt)
    ensemble = atoms.calc if calc is None else calc
    # Cached: the optimiser evaluated this state (no model call). The ensemble computes the
    # stress with the forces whenever the cell is 3D periodic and every member provides it.
    atoms.get_forces()
    results = ensemble_results(atoms, ensemble)
    forces = np.asarray(results["forces"], dtype=float)
    final_fmax = float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0
    pressure = ensemble_pressure_GPa(atoms, results) if "stress" in results else None
    frame = annotate(atoms, results, ensemble.member_names, ensemble.weights,
                     hetens_converged=bool(outcome.converged), hetens_fmax=final_fmax,
                     hetens_steps=int(outcome.steps_done), hetens_optimizer=optimizer,
                     hetens_cell_relaxed=bool(cell))
    return Relaxation(outcome=outcome, frame=frame, fmax=final_fmax,
                      volume=float(atoms.get_volume()) if cell else None, pressure_GPa=pressure)
