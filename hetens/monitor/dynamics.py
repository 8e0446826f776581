"""Building the MD that ``hetens md`` runs (thermostat, barostat, velocities, seed)."""

from __future__ import annotations

import numpy as np

__all__ = ["DYNAMICS", "ENSEMBLES", "NPT_DYNAMICS", "check_md_settings", "is_variable_cell", "make_md"]

#: Constant-pressure dynamics (the cell changes): see :func:`make_md`.
NPT_DYNAMICS = ("npt-berendsen", "npt-mtk")
#: Every dynamics :func:`make_md` builds.
DYNAMICS = ("langevin", "nve", "berendsen", *NPT_DYNAMICS)
#: The old name of :data:`DYNAMICS` (kept for existing code).
ENSEMBLES = DYNAMICS


def check_md_settings(
    timestep_fs: float,
    temperature_K: float,
    dynamics: str,
    friction_per_fs: float,
    *,
    pressure_GPa: float = 0.0,
    taup_fs: float = 1000.0,
    bulk_modulus_GPa: float = 100.0,
) -> None:
    """Refuse impossible settings (ValueError naming the value) before anything is loaded."""
    if not timestep_fs > 0:
        raise ValueError(f"the time step must be > 0 fs; got {timestep_fs}")
    if not temperature_K >= 0:
        raise ValueError(f"the temperature must be >= 0 K; got {temperature_K}")
    if dynamics not in DYNAMICS:
        raise ValueError(f"unknown dynamics {dynamics!r}; choose one of {', '.join(DYNAMICS)}")
    if dynamics == "langevin" and not friction_per_fs > 0:
        raise ValueError(f"the Langevin friction must be > 0 1/fs; got {friction_per_fs}")
    if dynamics in NPT_DYNAMICS:
        if not np.isfinite(pressure_GPa):
            raise ValueError(f"the pressure must be a finite number of GPa; got {pressure_GPa}")
        if not taup_fs > 0:
            raise ValueError(f"the barostat time constant must be > 0 fs; got {taup_fs}")
        if not bulk_modulus_GPa > 0:
            raise ValueError(f"the bulk modulus must be > 0 GPa; got {bulk_modulus_GPa}")
        if dynamics == "npt-mtk" and not temperature_K > 0:
            raise ValueError("npt-mtk needs a temperature > 0 K (its Nose-Hoover thermostat divides by it)")


#: ASE's constant-pressure MD classes (matched by name along the class hierarchy, so an ASE
#: release without one of them still imports).
_NPT_CLASSES = frozenset({"NPTBerendsen", "Inhomogeneous_NPTBerendsen", "IsotropicMTKNPT", "MTKNPT",
                          "MaskedMTKNPT", "MelchionnaNPT", "NPT"})


def is_variable_cell(dyn) -> bool:
    """Whether ``dyn`` changes the cell: ASE's NPT dynamics, or an optimizer of a cell filter.

    The uncertainty log of such a run gets ``P[GPa]`` and ``V[A^3]`` columns.
    """
    from ase.md.md import MolecularDynamics

    if isinstance(dyn, MolecularDynamics):
        return any(cls.__name__ in _NPT_CLASSES and cls.__module__.startswith("ase.md")
                   for cls in type(dyn).__mro__)
    atoms = getattr(dyn, "atoms", None)
    return any(cls.__name__.endswith("CellFilter") or cls.__name__ == "StrainFilter"
               for cls in type(atoms).__mro__)


def make_md(
    atoms,
    *,
    timestep_fs: float = 2.0,
    temperature_K: float = 300.0,
    dynamics: str | None = None,
    ensemble: str | None = None,
    friction_per_fs: float = 0.01,
    taut_fs: float = 100.0,
    pressure_GPa: float = 0.0,
    taup_fs: float = 1000.0,
    bulk_modulus_GPa: float = 100.0,
    seed: int = 0,
    initialise_velocities: bool = True,
):
    """An ASE MD object for ``atoms`` (whose calculator is already set).

    Args:
        atoms: the structure, with ``atoms.calc`` set.
        timestep_fs: time step in fs (> 0).
        temperature_K: target temperature (all but NVE) and initial
            Maxwell-Boltzmann temperature, K (>= 0).
        dynamics: ``"langevin"`` (NVT, stochastic; the default),
            ``"nve"`` (velocity Verlet), ``"berendsen"`` (NVT, weak
            coupling), ``"npt-berendsen"`` (ASE's ``NPTBerendsen``: isotropic
            weak coupling of T and P, robust for equilibrating a volume, but
            not a true NPT ensemble) or ``"npt-mtk"`` (ASE's
            ``IsotropicMTKNPT``: Martyna-Tobias-Klein with Nose-Hoover chains,
            samples the isothermal-isobaric ensemble; needs T > 0 and no
            constraints).
        ensemble: the former name of ``dynamics`` (same values).
        friction_per_fs: Langevin friction in 1/fs.
        taut_fs: thermostat time constant in fs (Berendsen ``taut``, MTK ``tdamp``).
        pressure_GPa: target pressure for the NPT dynamics, GPa.
        taup_fs: barostat time constant in fs (Berendsen ``taup``, MTK ``pdamp``).
        bulk_modulus_GPa: the material's bulk modulus, GPa, for
            ``npt-berendsen`` (its compressibility is 1/B; with a wrong B the
            volume still relaxes, only on a time scale other than ``taup_fs``).
        seed: seeds the initial velocities and Langevin's noise: the same
            seed gives the same trajectory on the same device.
        initialise_velocities: draw Maxwell-Boltzmann velocities (zero total
            momentum) unless the structure already has momenta.

    Returns:
        The dynamics; attach observers and run it (:func:`hetens.monitor.run_monitored`).
    """
    from ase import units
    from ase.md import velocitydistribution

    if dynamics is not None and ensemble is not None and dynamics != ensemble:
        raise ValueError(f"give the dynamics once: dynamics={dynamics!r} but ensemble={ensemble!r}")
    dynamics = dynamics or ensemble or "langevin"
    check_md_settings(timestep_fs, temperature_K, dynamics, friction_per_fs, pressure_GPa=pressure_GPa,
                      taup_fs=taup_fs, bulk_modulus_GPa=bulk_modulus_GPa)
    rng = np.random.default_rng(seed)
    if initialise_velocities and not np.any(atoms.get_momenta()):
        # ASE 3.29 renamed MaxwellBoltzmannDistribution (now deprecated) to thermalize_momenta.
        thermalize = getattr(velocitydistribution, "thermalize_momenta", None) or getattr(
            velocitydistribution, "MaxwellBoltzmannDistribution")
        thermalize(atoms, temperature_K=temperature_K, rng=rng)
        velocitydistribution.Stationary(atoms)
    dt = timestep_fs * units.fs
    if dynamics in NPT_DYNAMICS:
        _check_periodic(atoms, dynamics)
    if dynamics == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    if dynamics == "berendsen":
        from ase.md.nvtberendsen import NVTBerendsen

        return NVTBerendsen(atoms, dt, temperature_K=temperature_K, taut=taut_fs * units.fs)
    if dynamics == "npt-berendsen":
        from ase.md.nptberendsen import NPTBerendsen

        return NPTBerendsen(atoms, dt, temperature_K=temperature_K, taut=taut_fs * units.fs,
                            pressure_au=pressure_GPa * units.GPa, taup=taup_fs * units.fs,
                            compressibility_au=1.0 / (bulk_modulus_GPa * units.GPa))
    if dynamics == "npt-mtk":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        if atoms.constraints:
            raise ValueError(f"npt-mtk does not support constraints; {atoms.get_chemical_formula()} has "
                             f"{', '.join(type(c).__name__ for c in atoms.constraints)} (use npt-berendsen)")
        return IsotropicMTKNPT(atoms, dt, temperature_K=temperature_K, pressure_au=pressure_GPa * units.GPa,
                               tdamp=taut_fs * units.fs, pdamp=taup_fs * units.fs)
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    # ASE >= 3.28: fixcm=True is deprecated (biased sampling); FixCom keeps the centre of mass.
    if not any(isinstance(c, FixCom) for c in atoms.constraints):
        atoms.set_constraint([*atoms.constraints, FixCom()])
    return Langevin(atoms, dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs,
                    fixcm=False, rng=rng)


def _check_periodic(atoms, dynamics: str) -> None:
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise ValueError(
            f"{dynamics} changes the cell, so {atoms.get_chemical_formula()} must be periodic in all three "
            f"directions with a full cell; it has pbc={atoms.pbc.tolist()} (use nve, langevin or berendsen)"
        )
