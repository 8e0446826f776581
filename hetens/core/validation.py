"""Checks on a structure before any model sees it.

Each check raises :class:`hetens.errors.InvalidStructureError` with the
atom indices and values at fault, instead of a crash deep inside a model
package. :func:`check_structure` runs them all; it is cheap (a neighbour
list within ``min_distance``), so the calculator runs it on every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from hetens.errors import InvalidStructureError

__all__ = ["DEFAULT_MIN_DISTANCE", "check_structure", "unsupported_elements", "element_symbols"]

#: Atoms closer than this (Å) are "on top of each other": no uMLIP is
#: trained there and most return NaN or enormous forces.
DEFAULT_MIN_DISTANCE = 0.2


def check_structure(atoms, min_distance: float = DEFAULT_MIN_DISTANCE, label: str | None = None) -> None:
    """Raise :class:`InvalidStructureError` for a structure no model can evaluate.

    Checks, in order: at least one atom; finite positions and cell; every
    periodic direction has a non-zero cell vector; no two atoms closer than
    ``min_distance`` Å (with periodic images). ``label`` (e.g. ``"frame 12
    of traj.xyz"``) prefixes the message.
    """
    where = f"{label}: " if label else ""
    formula = atoms.get_chemical_formula() if len(atoms) else "(empty)"
    if len(atoms) == 0:
        raise InvalidStructureError(f"{where}the structure has no atoms")
    positions = atoms.positions
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        i = int(bad[0])
        raise InvalidStructureError(
            f"{where}{formula}: atom {i} ({atoms[i].symbol}) has a non-finite position {positions[i].tolist()}"
        )
    cell = atoms.cell.array
    if not np.isfinite(cell).all():
        raise InvalidStructureError(f"{where}{formula}: the cell has non-finite entries")
    lengths = np.linalg.norm(cell, axis=1)
    for axis in np.flatnonzero(atoms.pbc):
        if lengths[axis] < 1e-8:
            raise InvalidStructureError(
                f"{where}{formula}: periodic along axis {'abc'[axis]} but that cell vector is zero; "
                "set a cell, or pbc=False for a molecule"
            )
    if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-8 and atoms.pbc.all():
        raise InvalidStructureError(f"{where}{formula}: periodic cell with zero volume {cell.tolist()}")
    if len(atoms) > 1 and min_distance > 0:
        _check_overlaps(atoms, min_distance, where + formula)


def _check_overlaps(atoms, min_distance: float, where: str) -> None:
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, min_distance, self_interaction=False)
    if d.size:
        k = int(np.argmin(d))
        a, b = int(i[k]), int(j[k])
        raise InvalidStructureError(
            f"{where}: atoms {a} ({atoms[a].symbol}) and {b} ({atoms[b].symbol}) are "
            f"{d[k]:.3f} A apart, closer than {min_distance} A; the structure is unphysical"
        )


def unsupported_elements(
    atoms, supported: Mapping[str, Iterable[int] | None]
) -> tuple[dict[str, list[int]], list[int]]:
    """Which members lack which of the structure's elements.

    Args:
        atoms: the structure.
        supported: member name -> atomic numbers it was trained on (``None``
            when unknown: not checked).

    Returns:
        ``(missing, nobody)``: member name -> sorted atomic numbers of the
        structure it was not trained on (members lacking none are left out),
        and the atomic numbers no member supports (empty unless every member's
        set is known).
    """
    present = set(np.unique(atoms.numbers).tolist())
    missing: dict[str, list[int]] = {}
    covered: set[int] = set()
    for name, elements in supported.items():
        if elements is None:
            covered = present
            continue
        elements = set(elements)
        covered |= elements & present
        lacking = sorted(present - elements)
        if lacking:
            missing[name] = lacking
    return missing, sorted(present - covered)


def element_symbols(numbers: Iterable[int]) -> str:
    """``"U, Pu"`` for ``[92, 94]``."""
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[z] for z in numbers)
