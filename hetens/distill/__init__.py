"""Closing the distillation loop: DFT results back in, one energy reference, training sets.

- :mod:`hetens.distill.matching`: read a ``hetens select --out-dir`` folder
  and match DFT results to the frames queued for DFT.
- :mod:`hetens.distill.reference`: per-element energy shifts by least
  squares (pure numpy), with the identifiability check.
- :mod:`hetens.distill.trainsets`: extxyz (MACE, NequIP), pacemaker's
  pickle, DeePMD through dpdata.
- :mod:`hetens.distill.merge`: the job behind ``hetens merge``.

Importing this package imports no model package (and not pandas or dpdata).
"""

from hetens.distill.merge import FORMATS, MergeResult, merge_selection
from hetens.distill.reference import ShiftFit, UndeterminedShiftsError, fit_shifts

__all__ = ["merge_selection", "MergeResult", "FORMATS", "fit_shifts", "ShiftFit", "UndeterminedShiftsError"]
