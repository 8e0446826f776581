"""The uncertainty log: one CSV row per observed step, with units in the header.

``step,time[fs],U[eV/A],max_u[eV/A],energy[eV],energy_std[eV/atom],T[K],most_deviating``

``time[fs]`` and ``T[K]`` are empty for optimizers (they have no time step).

Runs whose cell changes (NPT dynamics, a relaxation with ``--cell``) add two
columns at the end: ``P[GPa]`` (pressure from the ensemble stress plus the
kinetic term) and ``V[A^3]`` (cell volume).
"""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

__all__ = ["CELL_COLUMNS", "COLUMNS", "format_row", "read_log"]

COLUMNS = (
    "step",
    "time[fs]",
    "U[eV/A]",
    "max_u[eV/A]",
    "energy[eV]",
    "energy_std[eV/atom]",
    "T[K]",
    "most_deviating",
)

#: The log columns of a variable-cell run (NPT, cell relaxation).
CELL_COLUMNS = (*COLUMNS, "P[GPa]", "V[A^3]")

#: Column -> key of :func:`read_log`'s result.
_KEYS = {
    "step": "step",
    "time[fs]": "time_fs",
    "U[eV/A]": "U",
    "max_u[eV/A]": "max_u",
    "energy[eV]": "energy",
    "energy_std[eV/atom]": "energy_std",
    "T[K]": "T",
    "most_deviating": "most_deviating",
    "P[GPa]": "P",
    "V[A^3]": "V",
}


def format_row(observation, variable_cell: bool = False) -> list[str]:
    """The CSV fields of one :class:`~hetens.monitor.observation.Observation`.

    With ``variable_cell`` the two fields of :data:`CELL_COLUMNS` follow.
    """
    obs = observation
    cell = []
    if variable_cell:
        cell = ["" if obs.pressure_GPa is None else f"{obs.pressure_GPa:.6f}",
                "" if obs.volume is None else f"{obs.volume:.6f}"]
    return [
        str(obs.step),
        "" if obs.time_fs is None else f"{obs.time_fs:.4f}",
        f"{obs.uncertainty:.6f}",
        f"{obs.max_u:.6f}",
        f"{obs.energy:.6f}",
        f"{obs.energy_std:.6g}",
        "" if obs.temperature is None else f"{obs.temperature:.2f}",
        obs.most_deviating,
        *cell,
    ]


def read_log(path: str | os.PathLike) -> dict[str, Any]:
    """Read an uncertainty log back.

    Returns:
        ``{"step": (K,) int, "time_fs": (K,) fs, "U": (K,) eV/Å, "max_u": (K,)
        eV/Å, "energy": (K,) eV, "energy_std": (K,) eV/atom, "T": (K,) K,
        "most_deviating": list of K names}``, plus ``"P": (K,) GPa`` and
        ``"V": (K,) Å^3`` for a variable-cell log; empty fields are NaN.

    Raises:
        ValueError: the file is not an uncertainty log (names the file and
            the header found).
    """
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(rows[0]) not in (COLUMNS, CELL_COLUMNS):
        found = ",".join(rows[0]) if rows else "an empty file"
        raise ValueError(f"{path} is not a hetens uncertainty log: expected header {','.join(COLUMNS)}, found {found}")
    body = [row for row in rows[1:] if row]
    header = tuple(rows[0])
    columns = list(zip(*body)) if body else [()] * len(header)
    out: dict[str, Any] = {}
    for name, values in zip(header, columns):
        key = _KEYS[name]
        if key == "most_deviating":
            out[key] = list(values)
        elif key == "step":
            out[key] = np.array([int(v) for v in values], dtype=int)
        else:
            out[key] = np.array([float(v) if v else np.nan for v in values], dtype=float)
    return out
