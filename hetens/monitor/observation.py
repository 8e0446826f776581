"""What an uncertainty observer sees at one step of an ASE dynamics.

Observers never evaluate the models: they read the ensemble's
``calc.results``, which the dynamics has just computed (ASE's ``irun``
computes forces before it calls observers). :func:`ensemble_results` checks
that those results exist and belong to the current structure, so a stale U is
never reported as the current one.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ase import units

from hetens.core.calculator import HeterogeneousEnsembleCalculator

__all__ = ["Observation", "DynamicsView", "ensemble_pressure_GPa", "ensemble_results", "underlying_atoms"]


def underlying_atoms(atoms_or_filter):
    """The ``Atoms`` behind a filter (``FrechetCellFilter``...) given to an optimizer."""
    atoms = atoms_or_filter
    for _ in range(8):  # filters can wrap filters
        inner = getattr(atoms, "atoms", None)
        if inner is None or inner is atoms:
            break
        atoms = inner
    return atoms


def ensemble_results(atoms, calc: HeterogeneousEnsembleCalculator | None = None) -> Mapping[str, Any]:
    """The ensemble's results for the current state of ``atoms``, without computing anything.

    Args:
        atoms: the structure being simulated.
        calc: the ensemble, when ``atoms.calc`` wraps it (a ``SumCalculator``
            adding a dispersion correction, say); default ``atoms.calc``.

    Raises:
        TypeError: the calculator is not a :class:`HeterogeneousEnsembleCalculator`.
        RuntimeError: it has no results yet, or they belong to another
            structure (the observer was called outside the dynamics' loop).
    """
    calc = atoms.calc if calc is None else calc
    formula = atoms.get_chemical_formula()
    if not isinstance(calc, HeterogeneousEnsembleCalculator):
        raise TypeError(
            f"uncertainty observers need a HeterogeneousEnsembleCalculator; the calculator of "
            f"{formula} is {type(calc).__name__ if calc is not None else 'None'}. Set "
            "atoms.calc = hetens.default_ensemble() (or your own ensemble) before creating the "
            "dynamics, or pass calc= when the ensemble is wrapped in another calculator."
        )
    results = calc.results
    if "uncertainty" not in results:
        raise RuntimeError(
            f"the ensemble has no results yet for {formula}: observers read what the dynamics "
            "computed, they never run the models. Attach them with dyn.attach(observer) and run "
            "the dynamics, or call atoms.get_forces() before calling an observer by hand."
        )
    changes = calc.check_state(atoms)
    if changes:
        raise RuntimeError(
            f"the ensemble's results are for another state of {formula} (changed: "
            f"{', '.join(changes)}), so U would be stale. Call the observer right after a force "
            "evaluation (as dyn.attach does), or call atoms.get_forces() first."
        )
    return results


class DynamicsView:
    """Step and simulation time of an ASE dynamics, through a weak reference (as ``MDLogger``).

    Molecular dynamics (``ase.md.md.MolecularDynamics``) have a time step;
    optimizers do not (FIRE's ``dt`` is an adaptive step, not time), so their
    time is ``None``. ``variable_cell`` is true for NPT dynamics and for
    optimizers of a cell filter (their observations carry pressure and volume).
    """

    def __init__(self, dyn) -> None:
        from ase.md.md import MolecularDynamics

        if not hasattr(dyn, "nsteps"):
            raise TypeError(
                f"expected an ASE dynamics or optimizer (with nsteps); got {type(dyn).__name__}"
            )
        from hetens.monitor.dynamics import is_variable_cell

        self._dyn = weakref.ref(dyn)
        self.is_md = isinstance(dyn, MolecularDynamics)
        self.variable_cell = is_variable_cell(dyn)

    @property
    def dyn(self):
        dyn = self._dyn()
        if dyn is None:
            raise ReferenceError("the dynamics this observer was attached to no longer exists")
        return dyn

    def step(self) -> int:
        return int(self.dyn.nsteps)

    def time_fs(self) -> float | None:
        if not self.is_md:
            return None
        dyn = self.dyn
        return float(dyn.nsteps * dyn.dt / units.fs)


@dataclass(frozen=True)
class Observation:
    """The ensemble's view of one observed step.

    Attributes:
        step: ``dyn.nsteps`` (0 is the starting structure).
        time_fs: simulation time in fs; ``None`` for optimizers.
        uncertainty: U, eV/Å.
        max_u: largest per-atom uncertainty, eV/Å.
        energy: weighted mean potential energy, eV.
        energy_std: weighted member energy spread, eV/atom.
        temperature: instantaneous temperature in K; ``None`` for optimizers.
        most_deviating: name of the member contributing most to U.
        pressure_GPa: for a variable-cell run (NPT, cell relaxation): the
            pressure ``-trace(stress)/3 + 2 E_kin / (3 V)`` from the ensemble
            stress and the kinetic energy, GPa; ``None`` otherwise (or when
            the ensemble gave no stress).
        volume: for a variable-cell run, the cell volume in Å^3; ``None`` otherwise.
        atoms: the live structure (not a copy; use :meth:`frame` to keep it).
        results: the ensemble's ``calc.results`` for this step.
        calc: the ensemble.
    """

    step: int
    time_fs: float | None
    uncertainty: float
    max_u: float
    energy: float
    energy_std: float
    temperature: float | None
    most_deviating: str
    atoms: Any
    results: Mapping[str, Any]
    calc: HeterogeneousEnsembleCalculator
    pressure_GPa: float | None = None
    volume: float | None = None

    @classmethod
    def read(cls, view: DynamicsView, atoms, calc=None) -> "Observation":
        """Read the current step from the dynamics and the ensemble's results (no evaluation)."""
        results = ensemble_results(atoms, calc)
        ensemble = atoms.calc if calc is None else calc
        atomic_u = results["atomic_uncertainty"]
        return cls(
            step=view.step(),
            time_fs=view.time_fs(),
            uncertainty=float(results["uncertainty"]),
            max_u=float(atomic_u.max()) if len(atomic_u) else 0.0,
            energy=float(results["energy"]),
            energy_std=float(results["energy_std"]),
            temperature=float(atoms.get_temperature()) if view.is_md else None,
            most_deviating=ensemble.members[int(results["most_deviating_member"])].name,
            atoms=atoms,
            results=results,
            calc=ensemble,
            pressure_GPa=ensemble_pressure_GPa(atoms, results) if view.variable_cell else None,
            volume=float(atoms.get_volume()) if view.variable_cell else None,
        )

    def frame(self, **extra_info: Any):
        """An annotated copy of the structure (:func:`hetens.core.frames.annotate`), safe to write.

        Carries ``hetens_step`` and, for MD, ``hetens_time_fs`` besides the
        ``hetens_*`` keys of :mod:`hetens.core.frames`.
        """
        return annotate_state(self.atoms, self.results, self.calc, self.step, self.time_fs, **extra_info)


def ensemble_pressure_GPa(atoms, results: Mapping[str, Any]) -> float | None:
    """Pressure of ``atoms`` from the ensemble's stress and the kinetic energy, GPa.

    ``P = -(s_xx + s_yy + s_zz) / 3 + 2 E_kin / (3 V)`` with the stress
    ``s`` (6,) Voigt in eV/Å^3 from ``results`` (no model call) and ``E_kin``
    in eV (0 for an optimizer); what ASE's ``get_stress(include_ideal_gas=True)``
    gives. ``None`` when the results hold no stress.
    """
    import numpy as np

    stress = results.get("stress")
    if stress is None:
        return None
    volume = atoms.get_volume()
    virial = -float(np.sum(np.asarray(stress, dtype=float)[:3])) / 3.0
    kinetic = 2.0 * float(atoms.get_kinetic_energy()) / (3.0 * volume)
    return (virial + kinetic) / units.GPa


def annotate_state(atoms, results, calc, step: int, time_fs: float | None, **extra_info: Any):
    """:func:`hetens.core.frames.annotate` plus the step and time, for frames written during a run.

    Keys in ``atoms.info`` that would collide with the written energy/forces
    (a structure whose info already holds ``energy``, say) are kept as
    ``input_<key>``, so the extxyz writer never refuses the frame mid-run.
    """
    from hetens.core.frames import annotate

    from hetens.io.keys import STEP_KEY, TIME_FS_KEY

    extra: dict[str, Any] = {STEP_KEY: int(step)}
    if time_fs is not None:
        extra[TIME_FS_KEY] = float(time_fs)
    extra.update(extra_info)
    frame = annotate(atoms, results, calc.member_names, calc.weights, **extra)
    for key in [k for k in frame.info if k in frame.calc.results]:
        frame.info[f"input_{key}"] = frame.info.pop(key)
    for key in [k for k in frame.arrays if k in frame.calc.results]:
        frame.arrays[f"input_{key}"] = frame.arrays.pop(key)
    return frame
