"""The uncertainty log: one CSV row per observed step, with units in the header.

``step,time[fs],U[eV/A],max_u[eV/A],energy[eV],energy_std[eV/atom],T[K],most_deviating``

``time[fs]`` and ``T[K]`` are empty for optimizers (they have no time step).
"""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

__all__ = ["COLUMNS", "format_row", "read_log"]

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
}


def format_row(observation) -> list[str]:
    """The CSV fields of one :class:`~hetens.monitor.observation.Observation`."""
    obs = observation
    return [
        str(obs.step),
        "" if obs.time_fs is None else f"{obs.time_fs:.4f}",
        f"{obs.uncertainty:.6f}",
        f"{obs.max_u:.6f}",
        f"{obs.energy:.6f}",
        f"{obs.energy_std:.6g}",
        "" if obs.temperature is None else f"{obs.temperature:.2f}",
        obs.most_deviating,
    ]


def read_log(path: str | os.PathLike) -> dict[str, Any]:
    """Read an uncertainty log back.

    Returns:
        ``{"step": (K,) int, "time_fs": (K,) fs, "U": (K,) eV/Å, "max_u": (K,)
        eV/Å, "energy": (K,) eV, "energy_std": (K,) eV/atom, "T": (K,) K,
        "most_deviating": list of K names}``; empty time/T fields are NaN.

    Raises:
        ValueError: the file is not an uncertainty log (names the file and
            the header found).
    """
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(rows[0]) != COLUMNS:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise ValueError(f"{path} is not a hetens uncertainty log: expected header {','.join(COLUMNS)}, found {found}")
    body = [row for row in rows[1:] if row]
    columns = list(zip(*body)) if body else [()] * len(COLUMNS)
    out: dict[str, Any] = {}
    for name, values in zip(COLUMNS, columns):
        key = _KEYS[name]
        if key == "most_deviating":
            out[key] = list(values)
        elif key == "step":
            out[key] = np.array([int(v) for v in values], dtype=int)
        else:
            out[key] = np.array([float(v) if v else np.nan for v in values], dtype=float)
    return out
