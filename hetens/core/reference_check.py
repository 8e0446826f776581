"""Are the predictors on one energy reference? Judged on calm reference crystals.

A member on another energy reference (EMT next to uMLIPs, a model with its
own zero) is off by the same large amount on every structure, calm ones
included. Members that merely disagree about a strained, compressed or
broken structure are not: that disagreement is physical, local to the
structure, and comes with a large U, which is what the ensemble exists to
report. So a structure's own energy spread never refuses it; the reference
is judged on each element's *reference crystal* (:func:`reference_structure`),
evaluated once per predictor and element and cached by
:class:`EnergyReferenceCheck`:

- a predictor whose reference energy per atom lies more than
  ``max_deviation`` (eV/atom) from the predictors' median for an element
  of the structure is a :class:`~hetens.errors.MixedReferenceError` naming
  every predictor with its value;
- when is the reference judged: on the first structure holding an element
  when a predictor's level of theory is ``"unknown"`` (a plain ASE
  calculator, a local file: nothing vouches for its reference); for
  predictors of declared levels (already compared by label when the
  ensemble is built) only on structures where their energies per atom
  spread by more than ``max_deviation`` from their median. Calm structures
  of an ensemble of declared members therefore cost no extra evaluation.

The arithmetic (:func:`median_deviation`) is pure numpy; members are
evaluated through a callable the caller passes (the ensemble's own
evaluation step, workers included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii, reference_states
from ase.data.vdw import vdw_radii

from hetens.core.policy import DEFAULT_MAX_ENERGY_DEVIATION
from hetens.errors import MemberFailedError, MixedReferenceError

__all__ = [
    "DEFAULT_MAX_ENERGY_DEVIATION",
    "EnergyReferenceCheck",
    "median_deviation",
    "reference_structure",
]

#: Side (Å) of the periodic box around a diatomic element's molecule.
MOLECULE_BOX = 10.0

#: Halogens whose molecular crystals ASE does not tabulate: a molecule in a box.
HALOGENS = frozenset({"Cl", "Br", "I", "At"})

#: Evaluates members on one structure: (members, atoms) -> one
#: ``(energy, forces, stress)`` or ``None`` per member, in order; a failure
#: is stored in the dict passed as third argument, under the member's name.
Evaluate = Callable[[Sequence[Any], Atoms, dict], list]


def reference_structure(symbol: str) -> tuple[Atoms, str]:
    """The calm structure on which an element's reference energy is taken.

    - the element's ground-state crystal in ASE's reference states
      (:data:`ase.data.reference_states`), primitive cell, at the reference
      lattice constant (``ase.build.bulk(symbol)``; bcc W, fcc Cu, hcp Mg...);
    - a diatomic element (H, N, O, F; and Cl, Br, I, At, whose molecular
      crystals ASE does not tabulate): the molecule at the reference bond
      length (twice the covalent radius for the latter) in a periodic box of
      :data:`MOLECULE_BOX` Å;
    - any other element (a ground state with a basis ASE does not tabulate,
      or none: B, P, S, Mn, Ga, He, Rn...): fcc, one atom, nearest neighbours
      at twice the covalent radius (twice the van der Waals radius for the
      noble gases He and Rn).

    Returns:
        the structure (1-2 atoms, periodic) and a short description of it for
        messages (``"bcc, a=3.16 A"``).
    """
    z = atomic_numbers[symbol]
    state = reference_states[z] or {}
    symmetry = state.get("symmetry")
    if symmetry == "diatom" or symbol in HALOGENS:
        d = float(state["d"]) if symmetry == "diatom" else round(2.0 * float(covalent_radii[z]), 2)
        atoms = Atoms(f"{symbol}2", positions=[(0, 0, 0), (0, 0, d)], cell=[MOLECULE_BOX] * 3, pbc=True)
        return atoms, f"{symbol}2 molecule, d={d:g} A, in a {MOLECULE_BOX:g} A box"
    try:
        atoms = bulk(symbol)
        return atoms, f"{symmetry}, a={state['a']:g} A"
    except (ValueError, KeyError, RuntimeError, NotImplementedError):
        radius = float(vdw_radii[z] if symbol in ("He", "Rn") else covalent_radii[z])
        a = round(2.0 * radius * np.sqrt(2.0), 2)
        return bulk(symbol, "fcc", a=a), f"fcc, a={a:g} A (no tabulated ground state)"


def median_deviation(values) -> tuple[float, float]:
    """Median of ``values`` (P,) and the largest distance of any value from it (same unit)."""
    values = np.asarray(values, dtype=float)
    median = float(np.median(values))
    return median, float(np.max(np.abs(values - median)))


def _listing(names: Sequence[str], values) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in zip(names, values))


class EnergyReferenceCheck:
    """Per-calculator check that the predictors share one energy reference.

    Holds each predictor's reference energy per atom per element, computed
    once (one evaluation of a 1-2 atom cell per predictor and element).

    Args:
        max_deviation: eV/atom, the threshold of both the structure-spread
            trigger and the reference comparison.

    Attributes:
        references: element symbol -> member name -> reference energy, eV/atom.
        evaluations: member evaluations made on reference structures so far.
    """

    def __init__(self, max_deviation: float = DEFAULT_MAX_ENERGY_DEVIATION) -> None:
        self.max_deviation = float(max_deviation)
        self.references: dict[str, dict[str, float]] = {}
        self.evaluations = 0

    def check(self, members: Sequence[Any], energies, atoms, evaluate: Evaluate, label: str | None = None) -> None:
        """Refuse ``members`` (the predictors that gave results on ``atoms``) if on different references.

        Args:
            members: (P,) :class:`~hetens.Member` objects, predictors only.
            energies: (P,) their energies of ``atoms``, eV.
            atoms: the structure (its elements pick the reference crystals).
            evaluate: evaluates members on a reference structure (see :data:`Evaluate`).
            label: names the structure in messages (``"W2"``, ``"run.xyz frame 24 (W2)"``).

        Raises:
            MixedReferenceError: a predictor's reference energy per atom is
                more than ``max_deviation`` from the median for an element
                of ``atoms``; names the element, the reference crystal and
                every predictor's value, and the structure's own values.
            MemberFailedError: a predictor failed on a reference crystal.
        """
        if len(members) < 2:
            return
        per_atom = np.asarray(energies, dtype=float) / max(len(atoms), 1)
        _, spread = median_deviation(per_atom)
        undeclared = any(getattr(m, "level_of_theory", "unknown") == "unknown" for m in members)
        if spread <= self.max_deviation and not undeclared:
            return
        names = [m.name for m in members]
        for symbol in dict.fromkeys(atoms.get_chemical_symbols()):
            table = self._references_of(symbol, members, evaluate)
            values = [table[name] for name in names]
            median, deviation = median_deviation(values)
            if deviation > self.max_deviation:
                _, description = reference_structure(symbol)
                where = label or atoms.get_chemical_formula()
                raise MixedReferenceError(
                    f"the predictors are on different energy references: on the reference crystal of "
                    f"{symbol} ({description}) their energies are more than {self.max_deviation:g} eV/atom "
                    f"from their median {median:.3f} eV/atom: {_listing(names, values)} (eV/atom); on "
                    f"{where}: {_listing(names, per_atom)}. Use members of one reference, pass "
                    "max_energy_deviation (--max-energy-deviation) to change the threshold, or "
                    "allow_mixed_reference=True (--allow-mixed-reference) to average anyway"
                )

    def _references_of(self, symbol: str, members: Sequence[Any], evaluate: Evaluate) -> dict[str, float]:
        """Reference energies per atom of ``symbol`` for ``members``, evaluating those not cached yet."""
        table = self.references.setdefault(symbol, {})
        todo = [m for m in members if m.name not in table]
        if not todo:
            return table
        atoms, description = reference_structure(symbol)
        failures: dict[str, Exception] = {}
        outputs = evaluate(todo, atoms, failures)
        self.evaluations += len(todo)
        for member, output in zip(todo, outputs):
            if output is None:
                error = failures.get(member.name)
                raise MemberFailedError(
                    f"member {member.name} failed on the reference crystal of {symbol} ({description}), "
                    f"on which the energy-reference check compares the predictors: {error}. Pass "
                    "allow_mixed_reference=True (--allow-mixed-reference) to skip the check"
                ) from error
            table[member.name] = float(output[0]) / len(atoms)
        return table
