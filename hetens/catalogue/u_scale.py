"""What a U means: the default ensemble's calibration on reference DFT data.

``hetens/catalogue/presets/u_scale_default.json`` is written by
``benchmarks/u_scale.py`` (which says how it was made): the error bound
``k95`` (``eps <= k95 * U`` on 95 % of the reference frames, eps the largest
force error of the ensemble mean, eV/Å), and U's quantiles on calm crystals,
hot crystals, defects, liquids and by atom count. It describes the default
ensemble (hetens.DEFAULT_MEMBERS and DEFAULT_WITNESSES) only.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["default_u_scale", "u_context_lines", "u_scale_line", "witness_note"]

_CLASS_NAMES = {"crystal_calm": "calm crystals", "crystal_hot": "hot/strained crystals",
                "defect": "defects", "liquid": "liquids"}


@lru_cache(maxsize=1)
def default_u_scale() -> dict[str, Any]:
    """The shipped calibration record (see :mod:`benchmarks.u_scale` for its fields)."""
    text = resources.files("hetens.catalogue.presets").joinpath("u_scale_default.json").read_text()
    return json.loads(text)


def u_scale_line(u: float, member_names) -> str | None:
    """One line placing ``u`` (eV/Å) on the default ensemble's scale, or ``None`` for another ensemble."""
    scale = default_u_scale()
    if list(member_names) != list(scale["members"]):
        return None
    parts = []
    for key, label in _CLASS_NAMES.items():
        q = scale["by_class"].get(key)
        if q:
            parts.append(f"{label} {q['median']:.2g}")
    return (f"on {scale['n_frames']} W DFT frames the default ensemble's median U was: {', '.join(parts)} eV/A; "
            f"its force error eps stayed below {scale['k95']:.2g} x U on 95 % of them "
            f"(here: eps <~ {scale['k95'] * u:.2g} eV/A; docs/uncertainty-scale.md)")


def witness_note(most_deviating: str, roles: dict[str, str]) -> str | None:
    """A warning when the member deviating most is a witness (it then sets U's floor)."""
    if roles.get(most_deviating) != "witness":
        return None
    return (f"the most deviating member is the witness {most_deviating}: U reflects its disagreement with "
            "the predictors more than theirs with each other")


def most_deviating_line(counts: Mapping[str, int], roles: Mapping[str, str], unit: str = "frames") -> str | None:
    """``NAME on K of N frames`` for the member most often deviating most, with the
    :func:`witness_note` when it is a witness; ``None`` without counts."""
    total = sum(counts.values()) if counts else 0
    if not total:
        return None
    top = max(counts, key=lambda name: counts[name])
    line = f"{top} on {counts[top]} of {total} {unit}"
    others = [f"{name} {k}" for name, k in counts.items() if name != top and k]
    if others:
        line += f" ({', '.join(others)})"
    note = witness_note(top, roles)
    return f"{line}; {note}" if note else line


def u_context_lines(u_median: float, member_names: Sequence[str], roles: Mapping[str, str],
                    most_deviating_counts: Mapping[str, int] | None, unit: str = "frames") -> list[str]:
    """What a run's U means, for a summary: who deviates most (and whether that is a
    witness), and where the median U ``u_median`` (eV/Å) lies on the default ensemble's
    calibrated scale (only for the default ensemble). Lines are ``label: text``."""
    lines = []
    most = most_deviating_line(most_deviating_counts or {}, roles, unit)
    if most:
        lines.append(f"most deviating: {most}")
    scale = u_scale_line(u_median, member_names) if np.isfinite(u_median) else None
    if scale:
        lines.append(f"U scale: median U here {u_median:.3g} eV/A; {scale}")
    return lines
