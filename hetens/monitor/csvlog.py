"""The uncertainty log: one CSV row per observed step, with units in the header.

``step,time[fs],U[eV/A],max_u[eV/A],energy[eV],energy_std[eV/atom],T[K],most_deviating``

``time[fs]`` and ``T[K]`` are empty for optimizers (they have no time step).

Runs whose cell changes (NPT dynamics, a relaxation with ``--cell``) add two
columns: ``P[GPa]`` (pressure from the ensemble stress plus the
kinetic term) and ``V[A^3]`` (cell volume).

Runs with a two-level trust window (``--flag-between``) or a driver
(``--driver``) end with a ``trust`` column: ``accurate``, ``candidate`` or
``failed`` (:mod:`hetens.monitor.trust`) on every step with a fresh U.

A driver run (:class:`~hetens.monitor.driver.CheckedDriverCalculator`) logs
every step, but only its check steps have a U: between checks the fields
``U[eV/A]``, ``max_u[eV/A]``, ``energy_std[eV/atom]``, ``most_deviating`` and
``trust`` are empty (NaN in :func:`read_log`), so a stale U never looks
fresh; ``energy[eV]`` is the driver's energy on every row.
"""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

__all__ = ["CELL_COLUMNS", "COLUMNS", "TRUST_COLUMN", "format_row", "log_columns", "read_log"]

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

#: The last column of a log with a trust window or a driver.
TRUST_COLUMN = "trust"

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
    "trust": "trust",
}


def log_columns(variable_cell: bool = False, trust: bool = False) -> tuple[str, ...]:
    """The header of a log: :data:`COLUMNS`, :data:`CELL_COLUMNS`, either with ``trust`` last."""
    return (*(CELL_COLUMNS if variable_cell else COLUMNS), *((TRUST_COLUMN,) if trust else ()))


def format_row(observation, variable_cell: bool = False, trust=None) -> list[str]:
    """The CSV fields of one :class:`~hetens.monitor.observation.Observation`.

    With ``variable_cell`` the two fields of :data:`CELL_COLUMNS` follow; with
    ``trust`` (a :class:`~hetens.monitor.trust.TrustWindow`, or ``True`` for a
    driver run without one) the trust level. A step without a fresh U (between
    a driver's checks) leaves U, max_u, energy_std, most_deviating and trust empty.
    """
    obs = observation
    fresh = getattr(obs, "fresh", True)
    cell = []
    if variable_cell:
        cell = ["" if obs.pressure_GPa is None else f"{obs.pressure_GPa:.6f}",
                "" if obs.volume is None else f"{obs.volume:.6f}"]
    level = []
    if trust is not None and trust is not False:
        level = [trust.level(obs.uncertainty) if fresh and hasattr(trust, "level") else ""]
    return [
        str(obs.step),
        "" if obs.time_fs is None else f"{obs.time_fs:.4f}",
        f"{obs.uncertainty:.6f}" if fresh else "",
        f"{obs.max_u:.6f}" if fresh else "",
        f"{obs.energy:.6f}",
        f"{obs.energy_std:.6g}" if fresh else "",
        "" if obs.temperature is None else f"{obs.temperature:.2f}",
        obs.most_deviating if fresh else "",
        *cell,
        *level,
    ]


def read_log(path: str | os.PathLike) -> dict[str, Any]:
    """Read an uncertainty log back.

    Returns:
        ``{"step": (K,) int, "time_fs": (K,) fs, "U": (K,) eV/Å, "max_u": (K,)
        eV/Å, "energy": (K,) eV, "energy_std": (K,) eV/atom, "T": (K,) K,
        "most_deviating": list of K names}``, plus ``"P": (K,) GPa`` and
        ``"V": (K,) Å^3`` for a variable-cell log, ``"trust"``: list of K
        levels (``""`` where no U) for a log with a trust column; empty
        numeric fields are NaN (a driver run's steps between checks).

    Raises:
        ValueError: the file is not an uncertainty log (names the file and
            the header found).
    """
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    known = [log_columns(cell, trust) for cell in (False, True) for trust in (False, True)]
    if not rows or tuple(rows[0]) not in known:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise ValueError(f"{path} is not a hetens uncertainty log: expected header {','.join(COLUMNS)}, found {found}")
    body = [row for row in rows[1:] if row]
    header = tuple(rows[0])
    columns = list(zip(*body)) if body else [()] * len(header)
    out: dict[str, Any] = {}
    for name, values in zip(header, columns):
        key = _KEYS[name]
        if key in ("most_deviating", "trust"):
            out[key] = list(values)
        elif key == "step":
            out[key] = np.array([int(v) for v in values], dtype=int)
        else:
            out[key] = np.array([float(v) if v else np.nan for v in values], dtype=float)
    return out
