"""One structure through the ensemble: energy, forces, stress and U in one summary (``hetens single``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["single_point", "summarise_results"]

#: eV/Å^3 in GPa.
_EV_A3_IN_GPA = 160.21766208


def summarise_results(
    results: Mapping[str, Any], natoms: int, member_names: Sequence[str], weights
) -> dict[str, Any]:
    """A JSON-serialisable summary of an ensemble's ``calc.results`` for one structure.

    Args:
        results: the ensemble's results (``energy`` eV, ``forces`` (N, 3)
            eV/Å, optional ``stress`` (6,) Voigt eV/Å^3, ``uncertainty``,
            ``atomic_uncertainty`` (N,) eV/Å, ``member_energies`` (M,) eV,
            ``energy_std`` eV/atom, ``most_deviating_member``).
        natoms: N.
        member_names: (M,) names.
        weights: (M,) normalised weights (``results["member_weights"]``,
            when present, are used instead: they are 0 for dropped members).

    Returns:
        ``energy`` (eV), ``energy_per_atom`` (eV/atom), ``forces_max`` (largest
        |F|, eV/Å), ``forces_rms`` (RMS over all components, eV/Å),
        ``stress_GPa`` ((6,) Voigt xx yy zz yz xz xy, GPa, or ``None``),
        ``pressure_GPa`` (``-trace/3``, GPa, or ``None``), ``U`` (eV/Å),
        ``max_u`` (eV/Å) and ``max_u_atom`` (its index), ``energy_std``
        (eV/atom), ``most_deviating`` (name), ``members``, ``weights``,
        ``member_energies`` ({name: eV}, NaN as ``None`` for a dropped
        member), ``member_energies_per_atom`` ({name: eV/atom}).
    """
    forces = np.asarray(results["forces"], dtype=float).reshape(-1, 3)
    norms = np.sqrt((forces**2).sum(axis=1))
    atomic_u = np.asarray(results["atomic_uncertainty"], dtype=float)
    energy = float(results["energy"])
    stress = results.get("stress")
    stress_gpa = None if stress is None else (np.asarray(stress, dtype=float) * _EV_A3_IN_GPA)
    energies = np.asarray(results["member_energies"], dtype=float)
    names = list(member_names)

    def number(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    return {
        "natoms": int(natoms),
        "energy": energy,
        "energy_per_atom": energy / natoms,
        "forces_max": float(norms.max()) if norms.size else 0.0,
        "forces_rms": float(np.sqrt(np.mean(forces**2))) if forces.size else 0.0,
        "stress_GPa": None if stress_gpa is None else [float(s) for s in stress_gpa],
        "pressure_GPa": None if stress_gpa is None else float(-stress_gpa[:3].mean()),
        "U": float(results["uncertainty"]),
        "max_u": float(atomic_u.max()) if atomic_u.size else 0.0,
        "max_u_atom": int(atomic_u.argmax()) if atomic_u.size else None,
        "energy_std": float(results["energy_std"]),
        "most_deviating": names[int(results["most_deviating_member"])],
        "members": names,
        "weights": [float(w) for w in np.asarray(results.get("member_weights", weights), dtype=float)],
        "member_energies": {n: number(e) for n, e in zip(names, energies)},
        "member_energies_per_atom": {n: number(e / natoms) for n, e in zip(names, energies)},
    }


def single_point(atoms, calc=None) -> tuple[dict[str, Any], Any]:
    """Evaluate ``atoms`` with the ensemble once; its summary and an annotated copy.

    Args:
        atoms: the structure (its calculator is replaced by ``calc`` when given).
        calc: a :class:`~hetens.HeterogeneousEnsembleCalculator`; default ``atoms.calc``.

    Returns:
        (:func:`summarise_results` dict, plus ``formula``; the annotated frame
        of :func:`hetens.core.frames.annotate`, ready to write). Stress is
        computed when the structure is periodic in all three directions.
    """
    from hetens.core.frames import annotate

    if calc is not None:
        atoms.calc = calc
    calc = atoms.calc
    properties = ["energy", "forces"] + (["stress"] if calc.provides_stress(atoms) else [])
    for name in properties:  # one evaluation: the ensemble computes them together
        calc.get_property(name, atoms)
    results = calc.results
    summary = {"formula": atoms.get_chemical_formula()} | summarise_results(
        results, len(atoms), calc.member_names, calc.weights)
    return summary, annotate(atoms, results, calc.member_names, calc.weights)
