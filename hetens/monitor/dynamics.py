"""Building the MD that ``hetens md`` runs (thermostat, velocities, seed)."""

from __future__ import annotations

import numpy as np

__all__ = ["ENSEMBLES", "check_md_settings", "make_md"]

#: Supported thermodynamic ensembles for :func:`make_md`.
ENSEMBLES = ("langevin", "nve", "berendsen")


def check_md_settings(timestep_fs: float, temperature_K: float, ensemble: str, friction_per_fs: float) -> None:
    """Refuse impossible settings (ValueError naming the value) before anything is loaded."""
    if not timestep_fs > 0:
        raise ValueError(f"the time step must be > 0 fs; got {timestep_fs}")
    if not temperature_K >= 0:
        raise ValueError(f"the temperature must be >= 0 K; got {temperature_K}")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLES)}")
    if ensemble == "langevin" and not friction_per_fs > 0:
        raise ValueError(f"the Langevin friction must be > 0 1/fs; got {friction_per_fs}")


def make_md(
    atoms,
    *,
    timestep_fs: float = 2.0,
    temperature_K: float = 300.0,
    ensemble: str = "langevin",
    friction_per_fs: float = 0.01,
    taut_fs: float = 100.0,
    seed: int = 0,
    initialise_velocities: bool = True,
):
    """An ASE MD object for ``atoms`` (whose calculator is already set).

    Args:
        atoms: the structure, with ``atoms.calc`` set.
        timestep_fs: time step in fs (> 0).
        temperature_K: target temperature (Langevin, Berendsen) and initial
            Maxwell-Boltzmann temperature, K (>= 0).
        ensemble: ``"langevin"`` (NVT, stochastic), ``"nve"`` (velocity
            Verlet) or ``"berendsen"`` (NVT, weak coupling).
        friction_per_fs: Langevin friction in 1/fs.
        taut_fs: Berendsen coupling time in fs.
        seed: seeds the initial velocities and Langevin's noise: the same
            seed gives the same trajectory on the same device.
        initialise_velocities: draw Maxwell-Boltzmann velocities (zero total
            momentum) unless the structure already has momenta.

    Returns:
        The dynamics; attach observers and run it (:func:`hetens.monitor.run_monitored`).
    """
    from ase import units
    from ase.md import velocitydistribution

    check_md_settings(timestep_fs, temperature_K, ensemble, friction_per_fs)
    rng = np.random.default_rng(seed)
    if initialise_velocities and not np.any(atoms.get_momenta()):
        # ASE 3.29 renamed MaxwellBoltzmannDistribution (now deprecated) to thermalize_momenta.
        thermalize = getattr(velocitydistribution, "thermalize_momenta", None) or getattr(
            velocitydistribution, "MaxwellBoltzmannDistribution")
        thermalize(atoms, temperature_K=temperature_K, rng=rng)
        velocitydistribution.Stationary(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    if ensemble == "berendsen":
        from ase.md.nvtberendsen import NVTBerendsen

        return NVTBerendsen(atoms, dt, temperature_K=temperature_K, taut=taut_fs * units.fs)
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin

    # ASE >= 3.28: fixcm=True is deprecated (biased sampling); FixCom keeps the centre of mass.
    if not any(isinstance(c, FixCom) for c in atoms.constraints):
        atoms.set_constraint([*atoms.constraints, FixCom()])
    return Langevin(atoms, dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs,
                    fixcm=False, rng=rng)
