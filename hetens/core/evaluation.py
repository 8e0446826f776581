"""Evaluating one member on one structure, and checking what it returned.

Used by the ensemble calculator, the worker pool, batched rescoring and the
worker program that runs inside each member environment, so it depends only
on members and errors (numpy and ASE): a member environment imports nothing
of the parent side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from ase.calculators.calculator import BaseCalculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from hetens.errors import HetensError, MemberFailedError
from hetens.core.memory_guard import cpu_memory_returned

if TYPE_CHECKING:
    from hetens.core.member import Member

__all__ = ["evaluate_member", "checked_outputs", "MemberOutput"]

#: One member's output for one structure: energy (eV), forces (N, 3) eV/Å and
#: stress (6,) Voigt eV/Å³ or ``None``; float64.
MemberOutput = tuple[float, np.ndarray, "np.ndarray | None"]


def evaluate_member(member: Member, atoms, with_stress: bool, force: bool = False) -> MemberOutput:
    """Run one member on ``atoms`` in a single evaluation.

    ``force`` recomputes even when the member's own cache looks valid (ASE's
    ``check_state`` ignores ``atoms.info``, which a member may read).

    Returns:
        energy (eV), forces (N, 3) eV/Å and stress (6,) Voigt eV/Å³ (``None``
        unless ``with_stress``), all float64.

    Raises:
        MemberFailedError: the member raised (the original exception is
            chained), or returned missing, mis-shaped or non-finite output;
            the message names the member, the property and the formula.
    """
    try:
        with cpu_memory_returned(len(atoms), on_cpu(member)):
            energy, forces, stress = _member_outputs(member, atoms, with_stress, force)
    except HetensError:
        raise
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise MemberFailedError(
            f"member {member.name} failed on {atoms.get_chemical_formula()}: "
            f"{type(exc).__name__}: {first_line}"
        ) from exc
    return checked_outputs(member.name, atoms, energy, forces, stress)


def on_cpu(member: Member) -> bool:
    """Whether ``member`` computes in this process on a CPU (not a GPU, not a worker)."""
    device = str(getattr(member, "device", None) or "cpu")
    return device.startswith("cpu") and type(member.calculator).__name__ != "IsolatedCalculator"


def _member_outputs(member: Member, atoms, with_stress: bool, force: bool):
    calc = member.calculator
    properties = ["energy", "forces"] + (["stress"] if with_stress else [])
    if isinstance(calc, BaseCalculator):
        if force or calc.calculation_required(atoms, properties):
            # One call with every property, so calculators that only compute
            # what is asked for do not run twice.
            calc.atoms = None
            calc.results = {}
            calc.calculate(atoms, properties, all_changes)
            if calc.atoms is None:
                calc.atoms = atoms.copy()
        results = calc.results
        energy = results.get("energy", results.get("free_energy"))
        forces = results.get("forces")
        stress = results.get("stress") if with_stress else None
    else:
        energy = calc.get_potential_energy(atoms)
        forces = calc.get_forces(atoms)
        stress = calc.get_stress(atoms) if with_stress else None
    return energy, forces, stress


def checked_outputs(name: str, atoms, energy, forces, stress) -> MemberOutput:
    """A member's raw output cast to float64, refusing missing, mis-shaped or non-finite values.

    Args:
        name: the member's name, for messages.
        atoms: the structure it was computed for (N atoms).
        energy: a scalar, eV. forces: (N, 3) eV/Å. stress: (6,) Voigt or
            (3, 3) eV/Å³, or ``None`` when not asked for.

    Returns:
        ``(energy, forces, stress)`` as float, (N, 3) and (6,) float64 (stress ``None`` when not given).

    Raises:
        MemberFailedError: naming the member, what was wrong and the formula.
    """

    def fail(what: str) -> MemberFailedError:
        return MemberFailedError(f"member {name} {what} for {atoms.get_chemical_formula()}")

    if energy is None or forces is None:
        raise fail("returned no energy or no forces")
    energy_array = np.asarray(energy, dtype=float)
    if energy_array.size != 1:
        raise fail(f"returned an energy of shape {energy_array.shape}, expected a scalar")
    forces = np.asarray(forces, dtype=float)
    if forces.shape != (len(atoms), 3):
        raise fail(f"returned forces of shape {forces.shape}, expected ({len(atoms)}, 3)")
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape == (3, 3):
            stress = full_3x3_to_voigt_6_stress(stress)
        if stress.shape != (6,):
            raise fail(f"returned stress of shape {stress.shape}, expected (6,) Voigt")
    energy_value = float(energy_array.reshape(()))
    if not np.isfinite(energy_value):
        raise fail(f"returned a non-finite energy ({energy_value})")
    if not np.isfinite(forces).all():
        bad = int(np.flatnonzero(~np.isfinite(forces).all(axis=1))[0])
        raise fail(f"returned non-finite forces (first on atom {bad}, {atoms[bad].symbol})")
    if stress is not None and not np.isfinite(stress).all():
        raise fail("returned a non-finite stress")
    return energy_value, forces, stress
